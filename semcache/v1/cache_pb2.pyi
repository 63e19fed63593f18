from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CacheStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_STATUS_UNSPECIFIED: _ClassVar[CacheStatus]
    CACHE_STATUS_HIT: _ClassVar[CacheStatus]
    CACHE_STATUS_MISS: _ClassVar[CacheStatus]
    CACHE_STATUS_BYPASS: _ClassVar[CacheStatus]

class MatchKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_KIND_UNSPECIFIED: _ClassVar[MatchKind]
    MATCH_KIND_EXACT: _ClassVar[MatchKind]
    MATCH_KIND_SEMANTIC: _ClassVar[MatchKind]
CACHE_STATUS_UNSPECIFIED: CacheStatus
CACHE_STATUS_HIT: CacheStatus
CACHE_STATUS_MISS: CacheStatus
CACHE_STATUS_BYPASS: CacheStatus
MATCH_KIND_UNSPECIFIED: MatchKind
MATCH_KIND_EXACT: MatchKind
MATCH_KIND_SEMANTIC: MatchKind

class Scope(_message.Message):
    __slots__ = ("tenant", "model", "system_prompt", "params", "history")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    model: str
    system_prompt: str
    params: GenerationParams
    history: _containers.RepeatedCompositeFieldContainer[Turn]
    def __init__(self, tenant: _Optional[str] = ..., model: _Optional[str] = ..., system_prompt: _Optional[str] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ..., history: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ...) -> None: ...

class GenerationParams(_message.Message):
    __slots__ = ("temperature", "top_p", "max_tokens", "seed", "stop", "presence_penalty", "frequency_penalty", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    presence_penalty: float
    frequency_penalty: float
    extra: _containers.ScalarMap[str, str]
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_tokens: _Optional[int] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., presence_penalty: _Optional[float] = ..., frequency_penalty: _Optional[float] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class CacheControl(_message.Message):
    __slots__ = ("no_cache", "no_store", "max_age_seconds", "ttl_seconds")
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    NO_STORE_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    no_cache: bool
    no_store: bool
    max_age_seconds: int
    ttl_seconds: int
    def __init__(self, no_cache: _Optional[bool] = ..., no_store: _Optional[bool] = ..., max_age_seconds: _Optional[int] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("total_ms", "embed_ms", "search_ms", "llm_ms", "store_ms", "route_ms")
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    EMBED_MS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    LLM_MS_FIELD_NUMBER: _ClassVar[int]
    STORE_MS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_MS_FIELD_NUMBER: _ClassVar[int]
    total_ms: float
    embed_ms: float
    search_ms: float
    llm_ms: float
    store_ms: float
    route_ms: float
    def __init__(self, total_ms: _Optional[float] = ..., embed_ms: _Optional[float] = ..., search_ms: _Optional[float] = ..., llm_ms: _Optional[float] = ..., store_ms: _Optional[float] = ..., route_ms: _Optional[float] = ...) -> None: ...

class CacheInfo(_message.Message):
    __slots__ = ("status", "kind", "similarity", "threshold", "entry_id", "matched_prompt", "shard", "namespace", "category", "coalesced", "stored", "age_seconds", "degraded", "timings", "guard", "runner_up_similarity", "fired_guards", "hit_probability", "hit_cut")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    GUARD_FIELD_NUMBER: _ClassVar[int]
    RUNNER_UP_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    FIRED_GUARDS_FIELD_NUMBER: _ClassVar[int]
    HIT_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    HIT_CUT_FIELD_NUMBER: _ClassVar[int]
    status: CacheStatus
    kind: MatchKind
    similarity: float
    threshold: float
    entry_id: str
    matched_prompt: str
    shard: str
    namespace: str
    category: str
    coalesced: bool
    stored: bool
    age_seconds: float
    degraded: _containers.RepeatedScalarFieldContainer[str]
    timings: Timings
    guard: str
    runner_up_similarity: float
    fired_guards: _containers.RepeatedScalarFieldContainer[str]
    hit_probability: float
    hit_cut: float
    def __init__(self, status: _Optional[_Union[CacheStatus, str]] = ..., kind: _Optional[_Union[MatchKind, str]] = ..., similarity: _Optional[float] = ..., threshold: _Optional[float] = ..., entry_id: _Optional[str] = ..., matched_prompt: _Optional[str] = ..., shard: _Optional[str] = ..., namespace: _Optional[str] = ..., category: _Optional[str] = ..., coalesced: _Optional[bool] = ..., stored: _Optional[bool] = ..., age_seconds: _Optional[float] = ..., degraded: _Optional[_Iterable[str]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., guard: _Optional[str] = ..., runner_up_similarity: _Optional[float] = ..., fired_guards: _Optional[_Iterable[str]] = ..., hit_probability: _Optional[float] = ..., hit_cut: _Optional[float] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("text", "chunks", "finish_reason", "usage", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    text: str
    chunks: _containers.RepeatedScalarFieldContainer[str]
    finish_reason: str
    usage: Usage
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, text: _Optional[str] = ..., chunks: _Optional[_Iterable[str]] = ..., finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("scope", "prompt", "category", "min_similarity", "cache_control")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    MIN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    CACHE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    prompt: str
    category: str
    min_similarity: float
    cache_control: CacheControl
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., prompt: _Optional[str] = ..., category: _Optional[str] = ..., min_similarity: _Optional[float] = ..., cache_control: _Optional[_Union[CacheControl, _Mapping]] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("cache", "answer")
    CACHE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    cache: CacheInfo
    answer: Answer
    def __init__(self, cache: _Optional[_Union[CacheInfo, _Mapping]] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ...) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("scope", "prompt", "answer", "category", "ttl_seconds")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    prompt: str
    answer: Answer
    category: str
    ttl_seconds: int
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., prompt: _Optional[str] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ..., category: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("entry_id", "shard", "namespace", "replaced", "timings", "unchanged")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    shard: str
    namespace: str
    replaced: bool
    timings: Timings
    unchanged: bool
    def __init__(self, entry_id: _Optional[str] = ..., shard: _Optional[str] = ..., namespace: _Optional[str] = ..., replaced: _Optional[bool] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., unchanged: _Optional[bool] = ...) -> None: ...

class ImportRequest(_message.Message):
    __slots__ = ("id", "store")
    ID_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    id: int
    store: StoreRequest
    def __init__(self, id: _Optional[int] = ..., store: _Optional[_Union[StoreRequest, _Mapping]] = ...) -> None: ...

class ImportResponse(_message.Message):
    __slots__ = ("id", "store", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    store: StoreResponse
    error: ImportFailure
    def __init__(self, id: _Optional[int] = ..., store: _Optional[_Union[StoreResponse, _Mapping]] = ..., error: _Optional[_Union[ImportFailure, _Mapping]] = ...) -> None: ...

class ImportFailure(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("tenant", "namespace", "all_tenants")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ALL_TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    namespace: str
    all_tenants: bool
    def __init__(self, tenant: _Optional[str] = ..., namespace: _Optional[str] = ..., all_tenants: _Optional[bool] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ExportedEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[ExportedEntry, _Mapping]]] = ...) -> None: ...

class ExportedEntry(_message.Message):
    __slots__ = ("entry_id", "namespace", "scope", "prompt", "answer", "category", "created_unix_seconds", "ttl_seconds", "hits", "tenant")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    namespace: str
    scope: Scope
    prompt: str
    answer: Answer
    category: str
    created_unix_seconds: float
    ttl_seconds: int
    hits: int
    tenant: str
    def __init__(self, entry_id: _Optional[str] = ..., namespace: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., prompt: _Optional[str] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ..., category: _Optional[str] = ..., created_unix_seconds: _Optional[float] = ..., ttl_seconds: _Optional[int] = ..., hits: _Optional[int] = ..., tenant: _Optional[str] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("scope", "prompt", "category", "min_similarity", "cache_control", "upstream_request_json")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    MIN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    CACHE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    prompt: str
    category: str
    min_similarity: float
    cache_control: CacheControl
    upstream_request_json: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., prompt: _Optional[str] = ..., category: _Optional[str] = ..., min_similarity: _Optional[float] = ..., cache_control: _Optional[_Union[CacheControl, _Mapping]] = ..., upstream_request_json: _Optional[str] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("cache", "answer")
    CACHE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    cache: CacheInfo
    answer: Answer
    def __init__(self, cache: _Optional[_Union[CacheInfo, _Mapping]] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ...) -> None: ...

class CompleteChunk(_message.Message):
    __slots__ = ("start", "delta", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: CacheInfo
    delta: str
    end: StreamEnd
    def __init__(self, start: _Optional[_Union[CacheInfo, _Mapping]] = ..., delta: _Optional[str] = ..., end: _Optional[_Union[StreamEnd, _Mapping]] = ...) -> None: ...

class StreamEnd(_message.Message):
    __slots__ = ("finish_reason", "usage", "cache")
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    finish_reason: str
    usage: Usage
    cache: CacheInfo
    def __init__(self, finish_reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., cache: _Optional[_Union[CacheInfo, _Mapping]] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("target", "scope", "entry_id")
    class Target(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TARGET_UNSPECIFIED: _ClassVar[InvalidateRequest.Target]
        TARGET_ENTRY: _ClassVar[InvalidateRequest.Target]
        TARGET_NAMESPACE: _ClassVar[InvalidateRequest.Target]
        TARGET_TENANT: _ClassVar[InvalidateRequest.Target]
    TARGET_UNSPECIFIED: InvalidateRequest.Target
    TARGET_ENTRY: InvalidateRequest.Target
    TARGET_NAMESPACE: InvalidateRequest.Target
    TARGET_TENANT: InvalidateRequest.Target
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    target: InvalidateRequest.Target
    scope: Scope
    entry_id: str
    def __init__(self, target: _Optional[_Union[InvalidateRequest.Target, str]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., entry_id: _Optional[str] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("scope", "entry_id", "verdict", "prompt")
    class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VERDICT_UNSPECIFIED: _ClassVar[FeedbackRequest.Verdict]
        VERDICT_WRONG_HIT: _ClassVar[FeedbackRequest.Verdict]
        VERDICT_CORRECT_HIT: _ClassVar[FeedbackRequest.Verdict]
    VERDICT_UNSPECIFIED: FeedbackRequest.Verdict
    VERDICT_WRONG_HIT: FeedbackRequest.Verdict
    VERDICT_CORRECT_HIT: FeedbackRequest.Verdict
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    entry_id: str
    verdict: FeedbackRequest.Verdict
    prompt: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., entry_id: _Optional[str] = ..., verdict: _Optional[_Union[FeedbackRequest.Verdict, str]] = ..., prompt: _Optional[str] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardStats(_message.Message):
    __slots__ = ("shard", "address", "reachable", "entries", "namespaces", "bytes", "lookups", "hits", "exact_hits", "semantic_hits", "misses", "coalesced", "evictions", "wrong_hits", "redis_state", "redis_backlog", "embedder_state", "model", "reembed_pending", "reembedded", "redis_written_back")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    EXACT_HITS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    WRONG_HITS_FIELD_NUMBER: _ClassVar[int]
    REDIS_STATE_FIELD_NUMBER: _ClassVar[int]
    REDIS_BACKLOG_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REEMBED_PENDING_FIELD_NUMBER: _ClassVar[int]
    REEMBEDDED_FIELD_NUMBER: _ClassVar[int]
    REDIS_WRITTEN_BACK_FIELD_NUMBER: _ClassVar[int]
    shard: str
    address: str
    reachable: bool
    entries: int
    namespaces: int
    bytes: int
    lookups: int
    hits: int
    exact_hits: int
    semantic_hits: int
    misses: int
    coalesced: int
    evictions: int
    wrong_hits: int
    redis_state: str
    redis_backlog: int
    embedder_state: str
    model: str
    reembed_pending: int
    reembedded: int
    redis_written_back: int
    def __init__(self, shard: _Optional[str] = ..., address: _Optional[str] = ..., reachable: _Optional[bool] = ..., entries: _Optional[int] = ..., namespaces: _Optional[int] = ..., bytes: _Optional[int] = ..., lookups: _Optional[int] = ..., hits: _Optional[int] = ..., exact_hits: _Optional[int] = ..., semantic_hits: _Optional[int] = ..., misses: _Optional[int] = ..., coalesced: _Optional[int] = ..., evictions: _Optional[int] = ..., wrong_hits: _Optional[int] = ..., redis_state: _Optional[str] = ..., redis_backlog: _Optional[int] = ..., embedder_state: _Optional[str] = ..., model: _Optional[str] = ..., reembed_pending: _Optional[int] = ..., reembedded: _Optional[int] = ..., redis_written_back: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("shards", "total")
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[ShardStats]
    total: ShardStats
    def __init__(self, shards: _Optional[_Iterable[_Union[ShardStats, _Mapping]]] = ..., total: _Optional[_Union[ShardStats, _Mapping]] = ...) -> None: ...

class RingRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ...) -> None: ...

class RingMember(_message.Message):
    __slots__ = ("id", "address", "share", "healthy", "in_flight")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    share: float
    healthy: bool
    in_flight: int
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., share: _Optional[float] = ..., healthy: _Optional[bool] = ..., in_flight: _Optional[int] = ...) -> None: ...

class RingResponse(_message.Message):
    __slots__ = ("members", "vnodes", "load_factor", "namespace", "owners")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    VNODES_FIELD_NUMBER: _ClassVar[int]
    LOAD_FACTOR_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[RingMember]
    vnodes: int
    load_factor: float
    namespace: str
    owners: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, members: _Optional[_Iterable[_Union[RingMember, _Mapping]]] = ..., vnodes: _Optional[int] = ..., load_factor: _Optional[float] = ..., namespace: _Optional[str] = ..., owners: _Optional[_Iterable[str]] = ...) -> None: ...
