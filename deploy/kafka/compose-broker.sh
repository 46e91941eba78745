#!/bin/sh
# Kafka for docker compose: one KRaft broker+controller, secured as every deployment of the
# bus is (deploy/local/capps_stack/kafka.py writes the same settings for `make up`):
#  - every listener takes SASL only: SCRAM-SHA-512 for clients and the broker itself, PLAIN on
#    the controller listener (KRaft controllers cannot check SCRAM credentials);
#  - StandardAuthorizer with allow.everyone.if.no.acl.found=false: no ACL means denied;
#  - the admin principal is the only super user; its SCRAM credential is written when the
#    storage is formatted (first start), since the broker needs it to authenticate anyone.
# The services' users and ACLs come from bus-security.sh (the compose job kafka-security).
#
# Environment: KAFKA_ADMIN_PASSWORD (required), CLUSTER_ID, KAFKA_ADVERTISED_HOST (kafka),
# KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_HOST_PORT (29092, the listener
# published on the host's 127.0.0.1), KAFKA_DATA_DIR (/var/lib/kafka/data), KAFKA_HOME
# (/opt/kafka), KAFKA_CONFIG_FILE (where the settings are written).
set -eu

password=${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD}
case $password in '' | *[!A-Za-z0-9._~+/-]*)
  echo "KAFKA_ADMIN_PASSWORD: use letters, digits and ._~+/- only" >&2
  exit 2
  ;;
esac
home=${KAFKA_HOME:-/opt/kafka}
host=${KAFKA_ADVERTISED_HOST:-kafka}
data=${KAFKA_DATA_DIR:-/var/lib/kafka/data}
config=${KAFKA_CONFIG_FILE:-/tmp/capps-server.properties}
port=${KAFKA_PORT:-9092}
controller_port=${KAFKA_CONTROLLER_PORT:-9093}
host_port=${KAFKA_HOST_PORT:-29092}

umask 077 # the file holds the admin password
cat >"$config" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$host:$controller_port
listeners=BROKER://:$port,CONTROLLER://:$controller_port,HOST://:$host_port
advertised.listeners=BROKER://$host:$port,HOST://localhost:$host_port
listener.security.protocol.map=BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT,HOST:SASL_PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=BROKER
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.broker.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$password";
listener.name.host.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$password" user_admin="$password";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin
log.dirs=$data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF

if [ ! -f "$data/meta.properties" ]; then
  echo "formatting $data with the admin's SCRAM credential"
  "$home/bin/kafka-storage.sh" format -t "${CLUSTER_ID:?set CLUSTER_ID}" -c "$config" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$password]" >/dev/null
fi
exec "$home/bin/kafka-server-start.sh" "$config"
