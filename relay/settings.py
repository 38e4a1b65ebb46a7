"""Settings: the only reader of the environment.

Names are a public interface (DESIGN.md §6). Everything the relay adds carries the
`RELAY_` prefix. Secrets are `SecretStr`, so they never show up in reprs or logs.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from relay.bundled import DataDirs, resolve_data_dirs
from relay.errors import ConfigurationError
from relay.taskrouter.policy import compile_policy
from relay.usage import MODEL_INPUT_LIMITS


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


# RELAY_REDACT_ENTITIES names (`bank` is account and routing numbers).
REDACT_ENTITIES = ("card", "security_code", "expiry", "ssn", "bank", "phone", "email")


def _default_host(data: dict[str, Any]) -> str:
    """RELAY_HOST when unset: `0.0.0.0` when Twilio Sync is configured, else `127.0.0.1`."""
    sync = data.get("twilio_account_sid") and data.get("twilio_auth_token") and data.get("twilio_sync_service_sid")
    return "0.0.0.0" if sync else "127.0.0.1"


class Settings(BaseSettings):
    # An empty variable counts as unset (`.env.example` ships `OPENAI_API_KEY=` and friends).
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, frozen=True, env_ignore_empty=True
    )

    # --- OpenAI Realtime
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str = Field("https://api.openai.com/v1", validation_alias=_env("OPENAI_BASE_URL"))
    realtime_model: str = Field("gpt-realtime-1.5", validation_alias=_env("RELAY_REALTIME_MODEL"))
    transcription_model: str = Field("gpt-transcribe", validation_alias=_env("RELAY_TRANSCRIPTION_MODEL"))
    transcription_language: str | None = Field(None, validation_alias=_env("RELAY_TRANSCRIPTION_LANGUAGE"))
    audio_format: Literal["pcm24k", "pcmu"] = Field("pcm24k", validation_alias=_env("RELAY_AUDIO_FORMAT"))
    transcribe_agent: bool = Field(True, validation_alias=_env("RELAY_TRANSCRIBE_AGENT"))
    append_batch_ms: int = Field(100, ge=20, le=1000, validation_alias=_env("RELAY_APPEND_BATCH_MS"))
    # How OpenAI appends are written: `frames` (pre-built WebSocket frames on the SDK's
    # connection, below its send wrapper) or `sdk` (its `send_raw`). Both put the same event on
    # the wire; bench/load.py measures the difference (README, Performance).
    append_writer: Literal["frames", "sdk"] = Field("frames", validation_alias=_env("RELAY_APPEND_WRITER"))
    audio_buffer_max_ms: int = Field(10_000, ge=100, le=600_000, validation_alias=_env("RELAY_AUDIO_BUFFER_MAX_MS"))
    reconnect_replay_ms: int = Field(2000, ge=0, le=30_000, validation_alias=_env("RELAY_RECONNECT_REPLAY_MS"))
    realtime_connect_timeout_s: float = Field(10.0, gt=0, validation_alias=_env("RELAY_REALTIME_CONNECT_TIMEOUT_S"))
    session_max_age_s: float = Field(55 * 60, gt=0, validation_alias=_env("RELAY_SESSION_MAX_AGE_S"))
    reconnect_max_attempts: int = Field(8, ge=0, validation_alias=_env("RELAY_RECONNECT_MAX_ATTEMPTS"))
    reconnect_initial_delay_s: float = Field(0.25, ge=0, validation_alias=_env("RELAY_RECONNECT_INITIAL_DELAY_S"))
    reconnect_max_delay_s: float = Field(8.0, gt=0, validation_alias=_env("RELAY_RECONNECT_MAX_DELAY_S"))

    # --- What a call costs (README, "What a call costs")
    # Unset: the list prices bundled with the relay (relay/usage/prices.toml).
    prices_file: Path | None = Field(None, validation_alias=_env("RELAY_PRICES_FILE"))
    # Each response re-reads (and is billed for) the conversation: past this many tokens after
    # the instructions the oldest items go, down to the retention ratio of it. Measured
    # defaults (bench/cost_bench.py); a lower ratio truncates less often, so the cache stays warm.
    max_context_tokens: int = Field(16_000, ge=1000, le=32_000, validation_alias=_env("RELAY_MAX_CONTEXT_TOKENS"))
    context_retention_ratio: float = Field(0.5, gt=0, le=1, validation_alias=_env("RELAY_CONTEXT_RETENTION_RATIO"))
    # Past this, a call goes on with transcripts only (status `degraded`). Unset: no budget.
    max_cost_per_call_usd: float | None = Field(None, gt=0, validation_alias=_env("RELAY_MAX_COST_PER_CALL_USD"))

    # --- Engine: "auto" uses OpenAI when OPENAI_API_KEY is set, else the offline engine
    engine: Literal["auto", "openai", "local"] = Field("auto", validation_alias=_env("RELAY_ENGINE"))
    # Unset: the prompts folder's `knowledge/`, else the bundled knowledge base (relay/bundled.py).
    knowledge_dir: Path | None = Field(None, validation_alias=_env("RELAY_KNOWLEDGE_DIR"))
    # Retrieval gate for both engines: cosine similarity (0–1); measured default (relay/knowledge/retrieval.py).
    # RELAY_LOCAL_MIN_SCORE, its earlier name (offline engine only), is still read.
    retrieval_min_score: float = Field(
        0.225, ge=0, le=1, validation_alias=AliasChoices("RELAY_RETRIEVAL_MIN_SCORE", "RELAY_LOCAL_MIN_SCORE")
    )
    # Offline engine: no card from an utterance the recognizer heard with a lower mean word
    # posterior (measured on synthesized held-out calls: bench/offline_heldout.py).
    local_min_confidence: float = Field(0.5, ge=0, le=1, validation_alias=_env("RELAY_LOCAL_MIN_CONFIDENCE"))
    # Offline engine's recognizer: `auto` is Whisper when the `offline` extra is installed, else
    # PocketSphinx; `whisper` refuses to start without the extra. The default stays PocketSphinx
    # until Whisper meets its accuracy goal on the held-out set (README: Offline engine).
    offline_recognizer: Literal["auto", "whisper", "pocketsphinx"] = Field(
        "pocketsphinx", validation_alias=_env("RELAY_OFFLINE_RECOGNIZER")
    )
    # Whisper model: tiny.en, or base (multilingual, decoded as English; ~3x the CPU per turn).
    whisper_model: Literal["tiny.en", "base"] = Field("tiny.en", validation_alias=_env("RELAY_WHISPER_MODEL"))
    # The customer's OpenAI session searches the knowledge through a function tool.
    knowledge_tool: bool = Field(True, validation_alias=_env("RELAY_KNOWLEDGE_TOOL"))

    # --- Wrap-up (after the call)
    wrapup: bool = Field(True, validation_alias=_env("RELAY_WRAPUP"))
    summary_model: str = Field("gpt-5-mini", validation_alias=_env("RELAY_SUMMARY_MODEL"))
    # Unset: the prompts folder's `wrapup/` (summary.md, dispositions.yaml), else the bundled one.
    wrapup_dir: Path | None = Field(None, validation_alias=_env("RELAY_WRAPUP_DIR"))
    summary_deadline_s: float = Field(30.0, gt=0, le=600, validation_alias=_env("RELAY_SUMMARY_DEADLINE_S"))
    summary_request_timeout_s: float = Field(20.0, gt=0, validation_alias=_env("RELAY_SUMMARY_REQUEST_TIMEOUT_S"))
    summary_max_attempts: int = Field(3, ge=1, le=10, validation_alias=_env("RELAY_SUMMARY_MAX_ATTEMPTS"))
    summary_token_budget: int = Field(12_000, ge=1000, validation_alias=_env("RELAY_SUMMARY_TOKEN_BUDGET"))
    summary_max_output_tokens: int = Field(2_000, ge=256, validation_alias=_env("RELAY_SUMMARY_MAX_OUTPUT_TOKENS"))
    task_summary_attribute: str = Field(
        "assist_wrapup", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", validation_alias=_env("RELAY_TASK_SUMMARY_ATTRIBUTE")
    )

    # --- Call records (search and replay)
    records: bool = Field(True, validation_alias=_env("RELAY_RECORDS"))
    data_dir: Path = Field(Path("data"), validation_alias=_env("RELAY_DATA_DIR"))
    # Unset: SQLite at <RELAY_DATA_DIR>/relay.db; postgresql://… for several relays sharing one history.
    database_url: SecretStr | None = Field(None, validation_alias=_env("RELAY_DATABASE_URL"))
    record_audio: bool = Field(False, validation_alias=_env("RELAY_RECORD_AUDIO"))
    retention_days: float = Field(90.0, ge=0, validation_alias=_env("RELAY_RETENTION_DAYS"))
    records_queue_max: int = Field(50_000, ge=100, validation_alias=_env("RELAY_RECORDS_QUEUE_MAX"))
    records_roles: Annotated[tuple[str, ...], NoDecode] = Field(
        ("supervisor", "admin"), validation_alias=_env("RELAY_RECORDS_ROLES")
    )

    # --- Several relays (scale-out): shared per-call state, when configured
    # Unset: one process keeps it in memory. redis://… (or rediss://): a call's Sync `seq`, its
    # owner (a duplicate stream elsewhere takes over), its recent context and the streams the
    # relay started (restarted on a stream-error callback) are shared by every replica.
    redis_url: SecretStr | None = Field(None, validation_alias=_env("RELAY_REDIS_URL"))
    # This process's name among the replicas (logs, takeovers). Unset: host name and pid.
    replica_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$", validation_alias=_env("RELAY_REPLICA_ID")
    )
    # Restart a stream the relay started when Twilio reports it errored or stopped while the
    # call still wants assist (a relay died, a drain closed the socket).
    restart_streams: bool = Field(True, validation_alias=_env("RELAY_RESTART_STREAMS"))

    # --- TaskRouter drives assist (POST /twilio/taskrouter)
    taskrouter_policy: str = Field("worker.assist != false", validation_alias=_env("RELAY_TASKROUTER_POLICY"))
    taskrouter_stop_policy: str = Field(
        'task.conference.participants.external != null OR task.transfer_target_type == "external"',
        validation_alias=_env("RELAY_TASKROUTER_STOP_POLICY"),
    )
    taskrouter_opt_out_attribute: str = Field(
        "assist_opt_out",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        validation_alias=_env("RELAY_TASKROUTER_OPT_OUT_ATTRIBUTE"),
    )
    taskrouter_stop_grace_s: float = Field(2.0, ge=0, le=60, validation_alias=_env("RELAY_TASKROUTER_STOP_GRACE_S"))

    # --- Prompts
    # Unset: `./prompts` when the working folder has one, else the bundled defaults.
    prompts_dir: Path | None = Field(None, validation_alias=_env("RELAY_PROMPTS_DIR"))
    prompt: str = Field("default", validation_alias=_env("RELAY_PROMPT"))

    # --- Twilio
    twilio_account_sid: str | None = Field(None, validation_alias=_env("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: SecretStr | None = Field(None, validation_alias=_env("TWILIO_AUTH_TOKEN"))
    twilio_api_key: str | None = Field(None, validation_alias=_env("TWILIO_API_KEY"))
    twilio_api_secret: SecretStr | None = Field(None, validation_alias=_env("TWILIO_API_SECRET"))
    twilio_sync_service_sid: str | None = Field(None, validation_alias=_env("TWILIO_SYNC_SERVICE_SID"))
    twilio_api_base_url: str = Field("https://api.twilio.com", validation_alias=_env("TWILIO_API_BASE_URL"))
    twilio_sync_base_url: str = Field("https://sync.twilio.com", validation_alias=_env("TWILIO_SYNC_BASE_URL"))
    twilio_iam_base_url: str = Field("https://iam.twilio.com", validation_alias=_env("TWILIO_IAM_BASE_URL"))
    twilio_taskrouter_base_url: str = Field(
        "https://taskrouter.twilio.com", validation_alias=_env("TWILIO_TASKROUTER_BASE_URL")
    )
    twilio_taskrouter_workspace_sid: str | None = Field(None, validation_alias=_env("TWILIO_TASKROUTER_WORKSPACE_SID"))
    twilio_webhook_shared_key: SecretStr | None = Field(None, validation_alias=_env("RELAY_TWILIO_WEBHOOK_SHARED_KEY"))
    twilio_http_timeout_s: float = Field(10.0, gt=0, validation_alias=_env("RELAY_TWILIO_HTTP_TIMEOUT_S"))

    # --- Serving
    public_url: str | None = Field(None, validation_alias=_env("RELAY_PUBLIC_URL"))
    # Unset: every interface with Twilio Sync, loopback only in hub mode (no Sync: the console
    # serves transcripts and records, so it is never reachable from elsewhere by accident).
    host: str = Field(default_factory=_default_host, validation_alias=_env("RELAY_HOST"))
    port: int = Field(8080, ge=0, le=65535, validation_alias=_env("RELAY_PORT"))
    # Hub mode reachable from other machines (RELAY_HOST not loopback): every console data route
    # needs this token (or a supervisor's Flex token). At least 16 characters.
    console_token: SecretStr | None = Field(None, min_length=16, validation_alias=_env("RELAY_CONSOLE_TOKEN"))
    use_uvloop: bool = Field(True, validation_alias=_env("RELAY_UVLOOP"))
    gc_freeze: bool = Field(True, validation_alias=_env("RELAY_GC_FREEZE"))
    gc_gen0_threshold: int = Field(50_000, ge=100, validation_alias=_env("RELAY_GC_GEN0_THRESHOLD"))
    # Loop-stall monitor: record (and log) every time the event loop is held longer than this
    # many ms, with a stack sample of what held it (relay/web/stall_monitor.py). 0: off.
    stall_monitor_ms: float = Field(0.0, ge=0, le=10_000, validation_alias=_env("RELAY_STALL_MONITOR_MS"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", validation_alias=_env("RELAY_LOG_LEVEL"))
    log_transcripts: bool = Field(False, validation_alias=_env("RELAY_LOG_TRANSCRIPTS"))
    # Redaction of card numbers and personal data in every final text (and the audio spans).
    redact: bool = Field(True, validation_alias=_env("RELAY_REDACT"))
    redact_entities: Annotated[tuple[str, ...], NoDecode] = Field(
        REDACT_ENTITIES, validation_alias=_env("RELAY_REDACT_ENTITIES")
    )
    pause_max_s: float = Field(180.0, gt=0, le=3600, validation_alias=_env("RELAY_PAUSE_MAX_S"))
    drain_deadline_s: float = Field(30.0, ge=0, validation_alias=_env("RELAY_DRAIN_DEADLINE_S"))

    # --- Trust and limits (media WebSocket)
    require_twilio_signature: bool = Field(True, validation_alias=_env("RELAY_REQUIRE_TWILIO_SIGNATURE"))
    media_api_key: SecretStr | None = Field(None, validation_alias=_env("RELAY_MEDIA_API_KEY"))
    media_api_key_header: str = Field("apikey", validation_alias=_env("RELAY_MEDIA_API_KEY_HEADER"))
    max_calls: int = Field(200, ge=1, validation_alias=_env("RELAY_MAX_CALLS"))
    max_message_bytes: int = Field(256 * 1024, ge=1024, validation_alias=_env("RELAY_MAX_MESSAGE_BYTES"))
    start_timeout_s: float = Field(10.0, gt=0, validation_alias=_env("RELAY_START_TIMEOUT_S"))
    idle_timeout_s: float = Field(30.0, gt=0, validation_alias=_env("RELAY_IDLE_TIMEOUT_S"))
    max_call_s: float = Field(4 * 3600, gt=0, validation_alias=_env("RELAY_MAX_CALL_S"))
    max_custom_params_bytes: int = Field(4096, ge=0, validation_alias=_env("RELAY_MAX_CUSTOM_PARAMS_BYTES"))

    # --- Sync publishing
    sync_stream_name: str = Field("FLEX_ASSIST_{call_sid}", validation_alias=_env("RELAY_SYNC_STREAM_NAME"))
    sync_stream_ttl_s: int = Field(2 * 3600, ge=60, le=31_536_000, validation_alias=_env("RELAY_SYNC_STREAM_TTL_S"))
    sync_rate_per_s: float = Field(30.0, gt=0, validation_alias=_env("RELAY_SYNC_RATE_PER_S"))
    sync_burst_window_s: float = Field(10.0, gt=0, validation_alias=_env("RELAY_SYNC_BURST_WINDOW_S"))
    sync_queue_max: int = Field(256, ge=8, validation_alias=_env("RELAY_SYNC_QUEUE_MAX"))
    sync_retry_budget_s: float = Field(30.0, gt=0, validation_alias=_env("RELAY_SYNC_RETRY_BUDGET_S"))
    sync_flush_deadline_s: float = Field(5.0, ge=0, validation_alias=_env("RELAY_SYNC_FLUSH_DEADLINE_S"))

    # --- Flex-facing API
    legacy_token_identity: str | None = Field(None, validation_alias=_env("RELAY_LEGACY_TOKEN_IDENTITY"))
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias=_env("RELAY_ALLOWED_ORIGINS"))
    # Proxies (addresses or CIDR blocks) whose X-Forwarded-For names the client: Flex token
    # checks are rate-limited per client, and behind a balancer every request comes from it.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias=_env("RELAY_TRUSTED_PROXIES"))
    token_ttl_s: int = Field(3600, ge=60, le=86_400, validation_alias=_env("RELAY_TOKEN_TTL_S"))
    flex_allowed_roles: Annotated[tuple[str, ...], NoDecode] = Field(
        ("agent", "supervisor", "admin"), validation_alias=_env("RELAY_FLEX_ALLOWED_ROLES")
    )
    flex_verdict_cache_s: float = Field(60.0, ge=0, validation_alias=_env("RELAY_FLEX_VERDICT_CACHE_S"))
    stream_track: Literal["inbound_track", "outbound_track", "both_tracks"] = Field(
        "inbound_track", validation_alias=_env("RELAY_STREAM_TRACK")
    )

    @field_validator(
        "allowed_origins", "flex_allowed_roles", "records_roles", "redact_entities", "trusted_proxies", mode="before"
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("redact_entities")
    @classmethod
    def _known_entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(REDACT_ENTITIES)
        if unknown:
            raise ValueError(f"unknown entities {sorted(unknown)}; known: {', '.join(REDACT_ENTITIES)}")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "*" in value:
            raise ValueError("a wildcard origin is not allowed; list the Flex origins explicitly")
        return value

    @field_validator("prompts_dir", "knowledge_dir", "wrapup_dir")
    @classmethod
    def _folder_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"folder {value} does not exist")
        return value

    @field_validator("taskrouter_policy", "taskrouter_stop_policy")
    @classmethod
    def _policy_compiles(cls, value: str) -> str:
        try:
            compile_policy(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("sqlite:///", "postgresql://", "postgres://")
        ):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http", "wss", "ws") or not parts.netloc:
            raise ValueError("must be an absolute URL such as https://relay.example.com")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        return value.rstrip("/")

    @field_validator("sync_stream_name")
    @classmethod
    def _stream_name_template(cls, value: str) -> str:
        if "{call_sid}" not in value:
            raise ValueError("must contain {call_sid}")
        try:
            value.format(call_sid="CA0")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"invalid template: {exc}") from None
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.session_max_age_s > 60 * 60:
            raise ValueError("RELAY_SESSION_MAX_AGE_S must be at most 3600 (OpenAI's session limit)")
        model_limit = MODEL_INPUT_LIMITS.get(self.realtime_model)
        if model_limit is not None and self.max_context_tokens > model_limit:
            # The API refuses a `post_instructions` above the model's context minus its output.
            raise ValueError(f"RELAY_MAX_CONTEXT_TOKENS must be at most {model_limit} for {self.realtime_model}")
        if self.twilio_auth_token is not None and self.require_twilio_signature and self.public_url is None:
            # Every Twilio stream would be refused: say so now, not at the first call.
            raise ValueError(
                "RELAY_PUBLIC_URL is required to check Twilio signatures (or set RELAY_REQUIRE_TWILIO_SIGNATURE=false)"
            )
        return self

    # --- derived views -------------------------------------------------------------

    @property
    def effective_engine(self) -> Literal["openai", "local"]:
        if self.engine == "auto":
            return "openai" if self.openai_api_key is not None else "local"
        return self.engine

    def data_dirs(self) -> DataDirs:
        """The prompts and knowledge folders in force (settings, working folder, or bundled)."""
        return resolve_data_dirs(self.prompts_dir, self.knowledge_dir, self.wrapup_dir)

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def sync_configured(self) -> bool:
        return self.twilio_configured and bool(self.twilio_sync_service_sid)

    def media_ws_public_url(self, path: str) -> str | None:
        """The `wss://` URL Twilio signs for a WebSocket upgrade on `path`."""
        if self.public_url is None:
            return None
        parts = urlsplit(self.public_url)
        scheme = "wss" if parts.scheme in ("https", "wss") else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{path}"

    def http_public_url(self, path: str) -> str | None:
        """The `https://` URL Twilio signs for a webhook on `path`."""
        if self.public_url is None:
            return None
        parts = urlsplit(self.public_url)
        scheme = "https" if parts.scheme in ("https", "wss") else "http"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{path}"

    @property
    def database(self) -> str:
        """Where call records go: RELAY_DATABASE_URL, else SQLite in the data folder."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'relay.db').resolve()}"

    def stream_name_for(self, call_sid: str) -> str:
        return self.sync_stream_name.format(call_sid=call_sid)


class SettingsError(ConfigurationError):
    """Startup configuration is invalid; the message names each bad variable."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"  {where}: {err['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
