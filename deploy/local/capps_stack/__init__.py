"""Starts, checks and stops the whole local stack without Docker (`make up`, `make down`).

Usage (with the venv's python, from anywhere):

    .venv/bin/python deploy/local/stack.py up [PART...]      start what is not running, wait healthy
    .venv/bin/python deploy/local/stack.py down [PART...]    stop what this stack started
    .venv/bin/python deploy/local/stack.py status            one line per part

Parts, in start order: kafka postgres redis prometheus demo-api registry aggregator gateway.
A part already answering on its port but not started by this stack (no live pidfile) is used as
it is and never stopped. Everything the stack writes lives under the state directory: pidfiles in
run/<part>.pid, logs in log/<part>.log, stack.env (URLs and Kafka's admin login for your shell
and the tests), secrets.env and kafka-passwords.env (the Kafka principals' passwords), all three
mode 0600, and the data of the servers it runs itself (kafka/, postgres/, redis/, prometheus/,
aggregator/). Kafka runs secured as in production (SASL/SCRAM, ACLs): once it is healthy,
deploy/kafka/bus-security.sh creates the services' users and ACLs. When the PostgreSQL server
must run as the `postgres` user (the stack runs as root) and that user cannot reach the state
directory (a checkout under a 0700 parent, as `mktemp -d` makes), its cluster lives in
/var/tmp/capps-postgres-<id> instead, and postgres/data in the state directory links to it.

Environment (all optional):
    CAPPS_LOCAL_DIR               state directory                      default <repo>/.local
    CAPPS_KAFKA_PORT              Kafka broker listener                default 9092
    CAPPS_KAFKA_CONTROLLER_PORT   Kafka KRaft controller listener      default 9093
    CAPPS_POSTGRES_PORT           PostgreSQL                           default 5432
    CAPPS_REDIS_PORT              Redis                                default 6379
    CAPPS_PROMETHEUS_PORT         Prometheus                           default 9090
    DEMO_API_PORT                 demo platform API (gateway upstream) default 8090
    REGISTRY_PORT                 registry                             default 8080
    AGGREGATOR_PORT               usage aggregator (health, metrics)   default 6066
    GATEWAY_PORT                  gateway proxy                        default 8000
    GATEWAY_ADMIN_PORT            gateway admin (health, metrics)      default 8001
    CAPPS_UP_TIMEOUT              seconds a part may take to get healthy, default 120
    CAPPS_KAFKA_HEAP              Kafka JVM max heap                   default 512m

Each service gets the variables capps_stack/environment.py lists for it (its connections,
its secrets, its own Kafka login, where it listens), with ENVIRONMENT=development.

Modules: config (ports, paths), process (pids, ports, commands), part (the lifecycle every
part shares), one module per part (kafka, postgres, redis, prometheus, services),
environment (what each service is given), cli (up, down, status).

Standard library only: it must run before anything else is known to work.
"""
