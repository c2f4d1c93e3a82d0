/*
 * trackfence: reserved client ids for Mosquitto 2.0 (plugin interface version 5).
 *
 * Mosquitto lets any authenticated client connect with any client id, and a new
 * connection with a connected client's id takes that client's place: it closes the
 * old connection and, with clean start off, inherits its persistent session (its
 * subscriptions and queued messages). A supplier that connected as the ingest worker
 * would take the worker's share of every supplier's fixes, and the broker would then
 * drop the ones the supplier may not read. No built-in option of Mosquitto 2.0 ties a
 * client id to a user in that direction: the dynamic security plugin binds a user to
 * one client id (not an id to its users), use_username_as_clientid gives all of a
 * supplier's devices the same id, and client ids are one namespace across listeners.
 *
 * This plugin refuses, at authentication (before any session is touched), a client id
 * in a reserved namespace unless the connecting user owns it:
 *
 *   plugin /usr/lib/mosquitto/trackfence_reserved_ids.so
 *   plugin_opt_reserved trackfence-              # ids beginning so are reserved
 *   plugin_opt_owner_ingest trackfence-ingest    # ...user ingest may use trackfence-ingest*
 *   plugin_opt_owner_console trackfence-console  # ...user console trackfence-console*
 *
 * Every other id is left to the password file and the ACL (the plugin defers): each
 * device of a supplier still connects with its own id, and owning an id grants no
 * login. `reserved` and `owner_USER` may each be given more than once; an owner prefix
 * outside every reserved prefix, or an unknown option, stops the broker from starting.
 * It applies where Mosquitto checks usernames and passwords (not on a listener that
 * takes the username from the client certificate).
 *
 * Self-contained: the few declarations below are those of mosquitto.h, mosquitto_broker.h
 * and mosquitto_plugin.h (2.0), so it builds with a C compiler alone:
 *   cc -std=c99 -O2 -Wall -Wextra -fPIC -shared -o trackfence_reserved_ids.so reserved_ids.c
 * With -DWITH_MOSQUITTO_HEADERS it uses Mosquitto's own headers instead (a check that
 * the declarations agree with them).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifdef WITH_MOSQUITTO_HEADERS
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#define PLUGIN_EXPORT
#else
/* ---- from mosquitto.h, mosquitto_plugin.h and mosquitto_broker.h (Mosquitto 2.0) ---- */
struct mosquitto;
typedef struct mosquitto_plugin_id_t mosquitto_plugin_id_t;
struct mosquitto_opt {
	char *key;
	char *value;
};
struct mosquitto_evt_basic_auth {
	void *future;
	struct mosquitto *client;
	char *username;
	char *password;
	void *future2[4];
};
typedef int (*MOSQ_FUNC_generic_callback)(int, void *, void *);
enum { MOSQ_EVT_BASIC_AUTH = 3 };
enum {
	MOSQ_ERR_SUCCESS = 0,
	MOSQ_ERR_NOMEM = 1,
	MOSQ_ERR_INVAL = 3,
	MOSQ_ERR_AUTH = 11,
	MOSQ_ERR_PLUGIN_DEFER = 17,
};
enum { MOSQ_LOG_NOTICE = 1 << 1, MOSQ_LOG_ERR = 1 << 3 };
int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event,
		MOSQ_FUNC_generic_callback cb_func, const void *event_data, void *userdata);
int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event,
		MOSQ_FUNC_generic_callback cb_func, const void *event_data);
const char *mosquitto_client_id(const struct mosquitto *client);
void mosquitto_log_printf(int level, const char *fmt, ...);

#define PLUGIN_EXPORT __attribute__((visibility("default")))
PLUGIN_EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions);
PLUGIN_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count);
PLUGIN_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count);
/* ---------------------------------------------------------------------------------------- */
#endif

#define OWNER_KEY "owner_"

struct owner {
	char *user;
	char *prefix;
};

struct rules {
	mosquitto_plugin_id_t *identifier;
	char **reserved;
	int reserved_count;
	struct owner *owners;
	int owner_count;
};

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool is_reserved(const struct rules *rules, const char *id)
{
	for(int i = 0; i < rules->reserved_count; i++){
		if(starts_with(id, rules->reserved[i])) return true;
	}
	return false;
}

static bool is_owned_by(const struct rules *rules, const char *id, const char *user)
{
	if(user == NULL) return false;
	for(int i = 0; i < rules->owner_count; i++){
		if(strcmp(rules->owners[i].user, user) == 0 && starts_with(id, rules->owners[i].prefix)){
			return true;
		}
	}
	return false;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	const struct mosquitto_evt_basic_auth *ed = event_data;
	const struct rules *rules = userdata;
	const char *id = mosquitto_client_id(ed->client);
	(void)event;

	if(id == NULL || !is_reserved(rules, id) || is_owned_by(rules, id, ed->username)){
		return MOSQ_ERR_PLUGIN_DEFER; /* the password file decides */
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"trackfence reserved ids: refused client id %s to user %s (reserved)",
			id, ed->username ? ed->username : "(anonymous)");
	return MOSQ_ERR_AUTH;
}

static void rules_free(struct rules *rules)
{
	if(rules == NULL) return;
	for(int i = 0; i < rules->reserved_count; i++) free(rules->reserved[i]);
	for(int i = 0; i < rules->owner_count; i++){
		free(rules->owners[i].user);
		free(rules->owners[i].prefix);
	}
	free(rules->reserved);
	free(rules->owners);
	free(rules);
}

static char *copy(const char *s)
{
	char *c = malloc(strlen(s) + 1);
	if(c) strcpy(c, s);
	return c;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	struct rules *rules = calloc(1, sizeof(*rules));
	if(rules == NULL) return MOSQ_ERR_NOMEM;
	rules->identifier = identifier;
	rules->reserved = calloc((size_t)option_count + 1, sizeof(char *));
	rules->owners = calloc((size_t)option_count + 1, sizeof(struct owner));
	if(rules->reserved == NULL || rules->owners == NULL){
		rules_free(rules);
		return MOSQ_ERR_NOMEM;
	}
	for(int i = 0; i < option_count; i++){
		const char *key = options[i].key, *value = options[i].value;
		if(value == NULL || value[0] == '\0' || strchr(value, ' ') || strchr(value, '\t')){
			mosquitto_log_printf(MOSQ_LOG_ERR,
					"trackfence reserved ids: plugin_opt_%s needs one client id prefix", key);
			rules_free(rules);
			return MOSQ_ERR_INVAL;
		}
		if(strcmp(key, "reserved") == 0){
			if((rules->reserved[rules->reserved_count] = copy(value)) == NULL){
				rules_free(rules);
				return MOSQ_ERR_NOMEM;
			}
			rules->reserved_count++;
		}else if(starts_with(key, OWNER_KEY) && key[strlen(OWNER_KEY)] != '\0'){
			struct owner *o = &rules->owners[rules->owner_count];
			o->user = copy(key + strlen(OWNER_KEY));
			o->prefix = copy(value);
			rules->owner_count++;
			if(o->user == NULL || o->prefix == NULL){
				rules_free(rules);
				return MOSQ_ERR_NOMEM;
			}
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR,
					"trackfence reserved ids: unknown option plugin_opt_%s"
					" (use plugin_opt_reserved PREFIX and plugin_opt_owner_USER PREFIX)", key);
			rules_free(rules);
			return MOSQ_ERR_INVAL;
		}
	}
	if(rules->reserved_count == 0){
		mosquitto_log_printf(MOSQ_LOG_ERR,
				"trackfence reserved ids: no plugin_opt_reserved PREFIX: nothing would be reserved");
		rules_free(rules);
		return MOSQ_ERR_INVAL;
	}
	for(int i = 0; i < rules->owner_count; i++){
		if(!is_reserved(rules, rules->owners[i].prefix)){
			mosquitto_log_printf(MOSQ_LOG_ERR,
					"trackfence reserved ids: plugin_opt_owner_%s %s lies outside every reserved prefix",
					rules->owners[i].user, rules->owners[i].prefix);
			rules_free(rules);
			return MOSQ_ERR_INVAL;
		}
	}
	int rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, rules);
	if(rc != MOSQ_ERR_SUCCESS){
		rules_free(rules);
		return rc;
	}
	for(int i = 0; i < rules->reserved_count; i++){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "trackfence reserved ids: client ids %s* reserved",
				rules->reserved[i]);
	}
	*userdata = rules;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct rules *rules = userdata;
	(void)options;
	(void)option_count;
	if(rules){
		mosquitto_callback_unregister(rules->identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
		rules_free(rules);
	}
	return MOSQ_ERR_SUCCESS;
}
