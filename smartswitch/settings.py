"""Smartswitch settings, read from the environment.

Every variable is listed with a comment in deploy/env.example. With no environment at all
the product runs as one demo node: SQLite under var/, in-memory channel layer, django-q2
brokered by the ORM.
"""

from pathlib import Path

import pymysql

from smartswitch.env import (
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_path,
    env_secret,
    env_str,
)

# Django's MySQL backend speaks MySQLdb; PyMySQL stands in for it (pure Python, no headers).
pymysql.install_as_MySQLdb()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("SMARTSWITCH_VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", default=True)
if DEBUG:
    SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-do-not-use-in-production")
else:
    SECRET_KEY = env_secret("SECRET_KEY")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# The node this process runs on; must match a Node row's name in a cluster.
NODE_NAME = env_str("NODE_NAME", "node1")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_htmx",
    "django_q",
    "apps.core",
    "apps.tenancy",
    "apps.audit",
    "apps.nodes",
    "apps.rates",
    "apps.peers",
    "apps.billing",
    "apps.cdr",
    "apps.routing",
    "apps.dids",
    "apps.callcontrol",
    "apps.portal",
    "apps.opensips",
    "apps.files",
    "apps.cluster",
    "apps.media",
    "apps.capture",
    "apps.fraud",
    "apps.reports",
    "apps.live",
    "apps.invoicing",
    "apps.bundles",
]

MIDDLEWARE = [
    "apps.core.middleware.JsonNotFoundMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The portal's language: the customer's choice (a cookie set by the account page), else
    # the browser's Accept-Language, else LANGUAGE_CODE.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "smartswitch.urls"
ASGI_APPLICATION = "smartswitch.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "smartswitch" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: one URL. SQLite (embedded default), mysql:// for MariaDB/Galera through
# PyMySQL, postgres:// through psycopg 3.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'smartswitch.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Conflicts (Galera certification failures, deadlocks, lock waits) are retried by
# apps.core.db.retry_on_conflict this many times in all, with jittered backoff.
DB_RETRY_ATTEMPTS = env_int("DB_RETRY_ATTEMPTS", 5, minimum=1)
DB_RETRY_BASE_DELAY = env_float("DB_RETRY_BASE_DELAY", 0.02, minimum=0)

# Galera, rendered per node into galera/60-galera.cnf by render_node_config (apps.cluster.galera;
# deploy/galera/README.md). SST method: rsync (no account, blocks the donor) or mariabackup;
# gcache: the writesets kept for a member that rejoins by IST instead of a full copy;
# sync wait 1 makes every read see what the cluster committed before it (0 turns that off).
GALERA_CLUSTER_NAME = env_str("GALERA_CLUSTER_NAME", "smartswitch")
GALERA_SST_METHOD = env_str("GALERA_SST_METHOD", "rsync")
GALERA_GCACHE_SIZE = env_str("GALERA_GCACHE_SIZE", "1G")
GALERA_SYNC_WAIT = env_int("GALERA_SYNC_WAIT", 1, minimum=0)
GALERA_APPLIER_THREADS = env_int("GALERA_APPLIER_THREADS", 4, minimum=1)

# The first backend refuses a user locked out after repeated failed logins (apps.fraud.login).
AUTHENTICATION_BACKENDS = [
    "apps.fraud.login.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:dashboard"
LOGOUT_REDIRECT_URL = "portal:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
# The languages the portal is translated into (each app's locale/; `make messages` updates them).
LANGUAGES = [("en", "English"), ("es", "Español")]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# In development whitenoise serves straight from the apps' static folders, no collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Files made on this node and copied to the others by the file-sync tasks.
RECORDINGS_DIR = env_path("RECORDINGS_DIR", VAR_DIR / "recordings")
CAPTURES_DIR = env_path("CAPTURES_DIR", VAR_DIR / "captures")
# Where each node's files land: a template with {name} and {address} (the node's management
# address) naming the directory that holds its recordings/ and captures/. user@host:/path
# (SSH with BatchMode: keys and known_hosts provisioned), rsync://host:port/module (an rsync
# daemon) or /path. A node's NodeStorage row (admin: Node storage) overrides it.
FILE_SYNC_TARGET = env_str("FILE_SYNC_TARGET", "smartswitch@{address}:/var/lib/smartswitch")
# Seconds one rsync run may take (below Q_CLUSTER's task timeout of 300 s), and seconds
# without I/O before rsync gives up.
FILE_SYNC_TIMEOUT = env_int("FILE_SYNC_TIMEOUT", 240, minimum=10)
FILE_SYNC_IO_TIMEOUT = env_int("FILE_SYNC_IO_TIMEOUT", 60, minimum=5)
# Retry backoff of a failed copy: base seconds doubled per attempt, capped.
FILE_SYNC_RETRY_BASE = env_int("FILE_SYNC_RETRY_BASE", 30, minimum=1)
FILE_SYNC_RETRY_MAX = env_int("FILE_SYNC_RETRY_MAX", 3600, minimum=1)
# Days a recording or capture is kept on every node; 0 keeps them forever.
RECORDING_RETENTION_DAYS = env_int("RECORDING_RETENTION_DAYS", 90, minimum=0)
CAPTURE_RETENTION_DAYS = env_int("CAPTURE_RETENTION_DAYS", 30, minimum=0)
# Uploads (issuers' logos on invoices): on this node's disk. A logo uploaded on one node is
# not copied to the others yet; a document made elsewhere goes without it.
MEDIA_ROOT = env_path("MEDIA_ROOT", VAR_DIR / "media")
# Longest-prefix index files of the rate tables, memory-mapped by every process of this node.
PREFIX_INDEX_DIR = env_path("PREFIX_INDEX_DIR", VAR_DIR / "prefix-index")
# Threads per web process that run call-control decisions (each keeps a database connection).
CALL_CONTROL_THREADS = env_int("CALL_CONTROL_THREADS", 8, minimum=1)
# Seconds a reservation or release may spend retrying write conflicts before call control
# answers 503 itself: below OpenSIPS's 2 s wait for the answer (rest_client curl_timeout),
# so that a call is refused cleanly rather than after OpenSIPS has given up on it.
CALL_CONTROL_RETRY_BUDGET = env_float("CALL_CONTROL_RETRY_BUDGET", 1.0, minimum=0.05)
# Overload control (docs/CALL_CONTROL.md, "Overload"). Seconds an authorization may wait for a
# thread before call control answers 503 without deciding it: its caller would have given up
# (OpenSIPS waits 2 s) by the time it was decided and its money held.
CALL_CONTROL_QUEUE_TIMEOUT = env_float("CALL_CONTROL_QUEUE_TIMEOUT", 0.5, minimum=0.01)
# Requests each node's OpenSIPS keeps waiting for call control at once; a call past them is
# refused at once with 503 "Overloaded" and Retry-After, counted in its script statistics.
OPENSIPS_CALL_CONTROL_QUEUE = env_int("OPENSIPS_CALL_CONTROL_QUEUE", 300, minimum=1)
# Uploaded price lists waiting for this node's worker; a file is kept only if its import failed.
PRICE_IMPORT_DIR = env_path("PRICE_IMPORT_DIR", VAR_DIR / "price-imports")

# Redis: absent, one node alone (in-memory channel layer, ORM task broker); present,
# channels-redis and the django-q2 Redis broker.
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

Q_CLUSTER = {
    # The same on every node: django-q2 signs task payloads with it as salt, so a task that
    # one node queues for another must carry it (not a valid node name, see below).
    "name": "smartswitch_tasks",
    # One django-q2 cluster (queue) per node, named after it, so node-bound work reaches its
    # node (apps.cluster.topology). Schedules without a cluster run nowhere: every schedule
    # names its node (apps.cluster.schedules).
    "cluster_name": NODE_NAME,
    # One worker is nearly always in the billing loop (apps.billing.tasks): keep others free.
    "workers": env_int("Q_WORKERS", 3, minimum=2),
    "timeout": 300,
    "retry": 360,
    "max_attempts": 3,
    "catch_up": False,
    "label": "Tasks",
}
if REDIS_URL:
    # Each node reads its own Redis; tasks for another node go to that node's Redis
    # (apps.cluster.broker), at this template: {name} and {address} (its management address).
    Q_CLUSTER["redis"] = REDIS_URL
    Q_CLUSTER["broker_class"] = "apps.cluster.broker.NodeRedis"
else:
    Q_CLUSTER["orm"] = "default"
REDIS_NODE_URL = env_str("REDIS_NODE_URL", "redis://{address}:6379/0")

# Node presence (apps.cluster.presence): seconds between two heartbeats of a node's workers,
# seconds without one after which the node counts as stale (cluster_status exits non-zero),
# and the TTL of the leases of cluster-wide work (a dead holder's leases move after it).
# CLUSTER_HEARTBEAT_IN_WORKERS=false leaves the beating to `manage.py cluster_heartbeat`.
CLUSTER_HEARTBEAT_SECONDS = env_int("CLUSTER_HEARTBEAT_SECONDS", 10, minimum=1)
CLUSTER_STALE_SECONDS = env_int("CLUSTER_STALE_SECONDS", 30, minimum=2)
CLUSTER_LEASE_SECONDS = env_int("CLUSTER_LEASE_SECONDS", 30, minimum=2)
CLUSTER_HEARTBEAT_IN_WORKERS = env_bool("CLUSTER_HEARTBEAT_IN_WORKERS", default=True)
if CLUSTER_STALE_SECONDS <= CLUSTER_HEARTBEAT_SECONDS or CLUSTER_LEASE_SECONDS <= CLUSTER_HEARTBEAT_SECONDS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "CLUSTER_STALE_SECONDS and CLUSTER_LEASE_SECONDS must be longer than CLUSTER_HEARTBEAT_SECONDS."
    )

# The most rows one page of an API list may hold (`?limit=`); more is a 400.
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 1000, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.tenancy.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.tenancy.api.permissions.HasScope"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api_limits.Pagination",
    "PAGE_SIZE": 50,
    # JSON nested at most 32 deep (apps.core.api_limits.JSONParser); forms as DRF's defaults.
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.api_limits.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "apps.core.api_limits.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # drf-spectacular's, with every operation's error answers documented.
    "DEFAULT_SCHEMA_CLASS": "apps.core.api.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Smartswitch API",
    "DESCRIPTION": (
        "Peers, prices, accounts, ledger and CDRs of a Smartswitch cluster. Authenticate with "
        "`Authorization: Bearer <api key>`; every list is scoped to the key's operator, "
        "reseller or customer. Amounts travel as strings."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Names of enum components that two choice sets would otherwise share, kept stable for
    # generated clients: call control's answer keeps "ActionEnum".
    "ENUM_NAME_OVERRIDES": {
        "ActionEnum": ["route", "reject", "redirect"],
        "InvoiceKindEnum": "apps.invoicing.models.Invoice.Kind",
        "InvoiceLineKindEnum": "apps.invoicing.models.InvoiceLine.Kind",
    },
}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "smartswitch@localhost")

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Behind the TLS proxy of deploy/INSTALL.md, which sets X-Forwarded-Proto.
    if env_bool("BEHIND_TLS_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # /health/ is probed over plain HTTP by keepalived and load balancers on the node.
    SECURE_REDIRECT_EXEMPT = [r"^health/$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# django-q2's Task model has a conditional index MariaDB cannot build; it still works
# without it. Our own models use no conditional indexes or constraints.
SILENCED_SYSTEM_CHECKS = [
    "models.W037",
    # HSTS for subdomains and the browsers' preload list commit the operator's whole domain
    # to HTTPS for years: a decision for the operator's web server, not for this product.
    "security.W005",
    "security.W021",
]

# OpenSIPS management interface (mi_http) of each node, and online billing. The URL is a
# template: {address} becomes the node's management address (an IPv6 one in brackets).
OPENSIPS_MI_URL = env_str("OPENSIPS_MI_URL", "http://{address}:8888/mi")
if not OPENSIPS_MI_URL.startswith(("http://", "https://")) or "{address}" not in OPENSIPS_MI_URL:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"OPENSIPS_MI_URL={OPENSIPS_MI_URL!r} must be an http(s):// URL containing {{address}}."
    )
# Automatic load balancing by DNS (apps.cluster.dns): RFC 2136 updates, signed with TSIG, to
# the primary server of DNS_ZONE, listing the live nodes under DNS_NAME. Empty server: off.
DNS_UPDATE_SERVER = env_str("DNS_UPDATE_SERVER", "")
DNS_UPDATE_PORT = env_int("DNS_UPDATE_PORT", 53, minimum=1)
DNS_UPDATE_TIMEOUT = env_float("DNS_UPDATE_TIMEOUT", 2.0, minimum=0.1)
DNS_ZONE = env_str("DNS_ZONE", "")
DNS_NAME = env_str("DNS_NAME", "")
DNS_TSIG_NAME = env_str("DNS_TSIG_NAME", "")
DNS_TSIG_SECRET = env_str("DNS_TSIG_SECRET", "")
DNS_TSIG_ALGORITHM = env_str("DNS_TSIG_ALGORITHM", "hmac-sha256")
DNS_TTL = env_int("DNS_TTL", 30, minimum=1)
if DNS_UPDATE_SERVER:
    from django.core.exceptions import ImproperlyConfigured

    _zone, _name = DNS_ZONE.strip(".").lower(), DNS_NAME.strip(".").lower()
    if not _zone or not (_name == _zone or _name.endswith("." + _zone)):
        raise ImproperlyConfigured(
            f"DNS_NAME={DNS_NAME!r} must be in DNS_ZONE={DNS_ZONE!r} "
            "(both are needed with DNS_UPDATE_SERVER)."
        )
    if bool(DNS_TSIG_NAME) != bool(DNS_TSIG_SECRET):
        raise ImproperlyConfigured("DNS_TSIG_NAME and DNS_TSIG_SECRET go together.")
# What keepalived's track script asks of the node's own call-control process (deploy/keepalived;
# rendered into keepalived.conf by apps.cluster.keepalived): smartswitch-callcontrol's address,
# so that a node whose calls would fail gives the shared IP up (its admin is not the point).
KEEPALIVED_HEALTH_URL = env_str("KEEPALIVED_HEALTH_URL", "http://127.0.0.1:8001/health/")
# Seconds an MI request may take in all (connect, send, answer) before the engine counts as down.
OPENSIPS_MI_TIMEOUT = env_float("OPENSIPS_MI_TIMEOUT", 2.0, minimum=0.1)
# Rendered into each node's opensips.cfg (apps.opensips.config): where OpenSIPS asks call
# control (the node's own smartswitch-callcontrol), the db_url of its modules (empty = the
# MariaDB DATABASE_URL; OpenSIPS cannot use SQLite or PostgreSQL for our tables) and its modules
# directory, the `mpath` OpenSIPS needs (it has no usable built-in one). Empty = detected
# (engines.opensips.install_layout): from the node's binary, OPENSIPS_BIN or `opensips` on PATH (its
# prefix's lib64/opensips/modules, lib/opensips/modules, lib/<multiarch>/opensips/modules, or a
# build tree's modules/ beside it), else the packages' /usr/lib/<multiarch>/opensips/modules
# (Debian, Ubuntu) or /usr/lib64/opensips/modules (RPM); rendering fails, naming them, if none.
CALL_CONTROL_URL = env_str("CALL_CONTROL_URL", "http://127.0.0.1:8001/call-control/v1")
OPENSIPS_DB_URL = env_str("OPENSIPS_DB_URL", "")
OPENSIPS_MODULES_DIR = env_str("OPENSIPS_MODULES_DIR", "")
OPENSIPS_BIN = env_str("OPENSIPS_BIN", "")
# Seconds an answered call waits for the caller's ACK before OpenSIPS ends it with BYEs both
# ways (the callee retransmits its 200 for 32 s; an ACK normally follows within milliseconds),
# and seconds between the in-dialog OPTIONS that end a call whose party no longer knows it
# (answers 481, or nothing: its BYE was lost). Both rendered into opensips.cfg.
OPENSIPS_ACK_TIMEOUT = env_int("OPENSIPS_ACK_TIMEOUT", 10, minimum=1)
# Seconds OpenSIPS waits for the node's FreeSWITCH to take a call that needs media (it answers
# 100 Trying at once) before it refuses the call with 503 "Media unavailable".
OPENSIPS_MEDIA_TIMEOUT = env_int("OPENSIPS_MEDIA_TIMEOUT", 2, minimum=1)
# Seconds an ESL exchange with a node's FreeSWITCH may take (engines.freeswitch).
FREESWITCH_ESL_TIMEOUT = env_float("FREESWITCH_ESL_TIMEOUT", 2.0, minimum=0.1)
# Rendered into each node's FreeSWITCH configuration (apps.media.config, docs/MEDIA.md).
FREESWITCH_RTP_START_PORT = env_int("FREESWITCH_RTP_START_PORT", 16384, minimum=1024)
FREESWITCH_RTP_END_PORT = env_int("FREESWITCH_RTP_END_PORT", 32767, minimum=1024)
FREESWITCH_MAX_SESSIONS = env_int("FREESWITCH_MAX_SESSIONS", 2000, minimum=1)
FREESWITCH_SESSIONS_PER_SECOND = env_int("FREESWITCH_SESSIONS_PER_SECOND", 200, minimum=1)
FREESWITCH_LOG_LEVEL = env_str("FREESWITCH_LOG_LEVEL", "info")
# Seconds FreeSWITCH lets a call through it ring in all before it gives up.
FREESWITCH_ANSWER_TIMEOUT = env_int("FREESWITCH_ANSWER_TIMEOUT", 300, minimum=10)
# Where each node keeps the announcement files its FreeSWITCH plays (apps.media.announcements),
# and what an uploaded announcement may be.
ANNOUNCEMENTS_DIR = env_path("ANNOUNCEMENTS_DIR", VAR_DIR / "announcements")
ANNOUNCEMENT_MAX_SECONDS = env_int("ANNOUNCEMENT_MAX_SECONDS", 60, minimum=1)
ANNOUNCEMENT_MAX_BYTES = env_int("ANNOUNCEMENT_MAX_BYTES", 2 * 1024 * 1024, minimum=1024)
# Call capture (apps.capture, docs/CAPTURE.md): where each node's capture listener takes HEP
# from its OpenSIPS and FreeSWITCH, and how long it holds a call's messages.
CAPTURE_HEP_ADDRESS = env_str("CAPTURE_HEP_ADDRESS", "127.0.0.1")
CAPTURE_HEP_PORT = env_int("CAPTURE_HEP_PORT", 9060, minimum=1)
CAPTURE_LINGER_SECONDS = env_int("CAPTURE_LINGER_SECONDS", 3, minimum=0)
CAPTURE_IDLE_SECONDS = env_int("CAPTURE_IDLE_SECONDS", 7200, minimum=1)
CAPTURE_MAX_CALLS = env_int("CAPTURE_MAX_CALLS", 5000, minimum=1)
CAPTURE_MAX_MESSAGES = env_int("CAPTURE_MAX_MESSAGES", 500, minimum=1)
# The UDP port on its management address each node's OpenSIPS sends captured SIP from (HEP);
# 0 leaves capture out of its opensips.cfg.
OPENSIPS_HEP_PORT = env_int("OPENSIPS_HEP_PORT", 9061, minimum=0)
# The permissions group of the addresses the SIP brute-force controller bans (apps.fraud):
# every node's OpenSIPS refuses requests from them before anything else.
OPENSIPS_BAN_GROUP = env_int("OPENSIPS_BAN_GROUP", 90, minimum=1)
OPENSIPS_PING_INTERVAL = env_int("OPENSIPS_PING_INTERVAL", 30, minimum=5)
# OpenSIPS writes its live calls to the node's dialog table at shutdown, so that a restart
# keeps them. With a number of seconds, also that often while it runs, so that a crash loses
# only the calls of the last interval; that costs a database insert, updates and a delete
# per call, in OpenSIPS's processes under the dialogs' locks (docs/BENCHMARKS.md: with 5 s,
# set-up p99 at 400 calls/s 636 ms against 244-328 ms). 0: at shutdown only.
OPENSIPS_DIALOG_FLUSH = env_int("OPENSIPS_DIALOG_FLUSH", 0, minimum=0)
# The most file descriptors each OpenSIPS process watches (SIP TCP connections, database and
# call-control connections): its `open_files_limit`, whatever the service's rlimit. OpenSIPS
# 3.6 checks its whole table of them each time it adds or removes one, which call control's
# request does twice per call: at 20,000 (a raised rlimit) OpenSIPS spent 8-12 % more CPU per
# call than at 4,096 (docs/BENCHMARKS.md). Raise it for thousands of SIP clients over TCP.
OPENSIPS_OPEN_FILES = env_int("OPENSIPS_OPEN_FILES", 4096, minimum=256)
# Seconds a call may ring (after the supplier's 180/183) before it is given up; before it
# rings, the route's setup timeout applies.
OPENSIPS_RINGING_TIMEOUT = env_int("OPENSIPS_RINGING_TIMEOUT", 60, minimum=5)
# Seconds between two runs of online billing (apps.billing.services.online.cut_overruns), which ends
# live calls whose account can no longer pay for them.
ONLINE_BILLING_INTERVAL = env_int("ONLINE_BILLING_INTERVAL", 5, minimum=1)
