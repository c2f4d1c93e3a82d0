"""What the safety task force reads: the trial report (and, later, the breach-log console)."""
