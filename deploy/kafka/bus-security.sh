#!/bin/sh
# The secured event bus: each service's SCRAM user and the ACLs that say what it may do.
# Run against a broker that requires SASL/SCRAM, has StandardAuthorizer and
# allow.everyone.if.no.acl.found=false, as its super user (the admin principal). Idempotent:
# running it again sets the passwords given and adds nothing twice. The same script runs in
# `make up` (deploy/local), the compose job `kafka-security` and the Kubernetes Job.
#
#   bus-security.sh [all|registry|gateway|aggregator]    (default: all)
#
# Environment: KAFKA_BOOTSTRAP_SERVERS; KAFKA_ADMIN_USERNAME (default admin) and
# KAFKA_ADMIN_PASSWORD; KAFKA_<SERVICE>_USERNAME (default the service's name) and
# KAFKA_<SERVICE>_PASSWORD for each service set up; optional KAFKA_SECURITY_PROTOCOL
# (SASL_PLAINTEXT), KAFKA_SASL_MECHANISM (SCRAM-SHA-512), KAFKA_SSL_CAFILE (a PEM CA, for
# SASL_SSL), KAFKA_BIN (where kafka-configs.sh and kafka-acls.sh are; /opt/kafka/bin).
#
# What each principal may do (nothing else: no ACL means denied):
#   registry    WRITE capps.apps.v1 (app states, from its outbox)
#   gateway     WRITE capps.requests.v1; READ capps.apps.v1 (no consumer group: it reads all)
#   aggregator  READ capps.requests.v1 with group capps-usage-aggregator; WRITE and CREATE
#               capps.requests.v1.dlq; faust's internal topics ("<group>-...")
set -eu

bin=${KAFKA_BIN:-/opt/kafka/bin}
servers=${KAFKA_BOOTSTRAP_SERVERS:?set KAFKA_BOOTSTRAP_SERVERS}
mechanism=${KAFKA_SASL_MECHANISM:-SCRAM-SHA-512}
apps_topic=capps.apps.v1
requests_topic=capps.requests.v1
dlq_topic=capps.requests.v1.dlq
aggregator_group=${AGGREGATOR_GROUP:-capps-usage-aggregator}
only=${1:-all}

case $only in all | registry | gateway | aggregator) ;; *)
  echo "usage: $0 [all|registry|gateway|aggregator]" >&2
  exit 2
  ;;
esac

# Characters that would end a JAAS string or a SCRAM config value are refused, not escaped.
password_ok() {
  case $1 in
    '' | *[!A-Za-z0-9._~+/-]*) return 1 ;;
    *) return 0 ;;
  esac
}

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

admin_password=${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD}
password_ok "$admin_password" || { echo "KAFKA_ADMIN_PASSWORD: use letters, digits and ._~+/- only" >&2; exit 2; }
# Credentials go to files, never to a command line another user could read with ps.
{
  echo "security.protocol=${KAFKA_SECURITY_PROTOCOL:-SASL_PLAINTEXT}"
  echo "sasl.mechanism=$mechanism"
  echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"${KAFKA_ADMIN_USERNAME:-admin}\" password=\"$admin_password\";"
  if [ -n "${KAFKA_SSL_CAFILE:-}" ]; then
    echo "ssl.truststore.type=PEM"
    echo "ssl.truststore.location=$KAFKA_SSL_CAFILE"
  fi
} >"$work/admin.properties"

# quietly TOOL ARGS...: run a Kafka tool; on failure show its output with passwords hidden
# (the tools echo a refused credential back).
quietly() {
  if ! "$@" >"$work/output" 2>&1; then
    sed 's/password[=:][^],;" ]*/password=<hidden>/g' "$work/output" >&2
    echo "failed: $(basename "$1")" >&2
    exit 1
  fi
}

# user NAME PASSWORD: create the SCRAM user or set its password.
user() {
  password_ok "$2" || { echo "the password of $1: use letters, digits and ._~+/- only" >&2; exit 2; }
  # A properties file takes the value without the brackets --add-config wants.
  echo "$mechanism=iterations=8192,password=$2" >"$work/scram.properties"
  quietly "$bin/kafka-configs.sh" --bootstrap-server "$servers" --command-config "$work/admin.properties" \
    --alter --entity-type users --entity-name "$1" --add-config-file "$work/scram.properties"
  echo "user $1: SCRAM credential set ($mechanism)"
}

# allow NAME kafka-acls-options...: add ALLOW ACLs for User:NAME.
allow() {
  name=$1
  shift
  quietly "$bin/kafka-acls.sh" --bootstrap-server "$servers" --command-config "$work/admin.properties" \
    --add --allow-principal "User:$name" "$@"
  echo "user $name: allowed $*"
}

if [ "$only" = all ] || [ "$only" = registry ]; then
  name=${KAFKA_REGISTRY_USERNAME:-registry}
  user "$name" "${KAFKA_REGISTRY_PASSWORD:?set KAFKA_REGISTRY_PASSWORD}"
  allow "$name" --operation Write --operation Describe --topic "$apps_topic"
fi

if [ "$only" = all ] || [ "$only" = gateway ]; then
  name=${KAFKA_GATEWAY_USERNAME:-gateway}
  user "$name" "${KAFKA_GATEWAY_PASSWORD:?set KAFKA_GATEWAY_PASSWORD}"
  allow "$name" --operation Write --operation Describe --topic "$requests_topic"
  allow "$name" --operation Read --operation Describe --topic "$apps_topic"
fi

if [ "$only" = all ] || [ "$only" = aggregator ]; then
  name=${KAFKA_AGGREGATOR_USERNAME:-aggregator}
  user "$name" "${KAFKA_AGGREGATOR_PASSWORD:?set KAFKA_AGGREGATOR_PASSWORD}"
  allow "$name" --operation Read --operation Describe --topic "$requests_topic" --group "$aggregator_group"
  allow "$name" --operation Write --operation Describe --operation Create --topic "$dlq_topic"
  # Faust names its internal topics after the app id, which is the consumer group.
  allow "$name" --resource-pattern-type prefixed --operation Read --operation Write \
    --operation Describe --operation Create --topic "$aggregator_group-"
fi
