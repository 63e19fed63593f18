from semcache.v1 import cache_pb2 as _cache_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportPartRequest(_message.Message):
    __slots__ = ("export", "part", "parts")
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    export: _cache_pb2.ExportRequest
    part: int
    parts: int
    def __init__(self, export: _Optional[_Union[_cache_pb2.ExportRequest, _Mapping]] = ..., part: _Optional[int] = ..., parts: _Optional[int] = ...) -> None: ...

class ExportPartResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: _cache_pb2.ExportResponse
    def __init__(self, batch: _Optional[_Union[_cache_pb2.ExportResponse, _Mapping]] = ...) -> None: ...

class ForwardRequest(_message.Message):
    __slots__ = ("id", "timeout_seconds", "lookup", "store", "complete", "cancel", "trace_context", "bulk")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    BULK_FIELD_NUMBER: _ClassVar[int]
    id: int
    timeout_seconds: float
    lookup: _cache_pb2.LookupRequest
    store: _cache_pb2.StoreRequest
    complete: _cache_pb2.CompleteRequest
    cancel: ForwardCancel
    trace_context: _containers.ScalarMap[str, str]
    bulk: bool
    def __init__(self, id: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., lookup: _Optional[_Union[_cache_pb2.LookupRequest, _Mapping]] = ..., store: _Optional[_Union[_cache_pb2.StoreRequest, _Mapping]] = ..., complete: _Optional[_Union[_cache_pb2.CompleteRequest, _Mapping]] = ..., cancel: _Optional[_Union[ForwardCancel, _Mapping]] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., bulk: _Optional[bool] = ...) -> None: ...

class ForwardCancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ForwardResponse(_message.Message):
    __slots__ = ("id", "lookup", "store", "complete", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    lookup: _cache_pb2.LookupResponse
    store: _cache_pb2.StoreResponse
    complete: _cache_pb2.CompleteResponse
    error: ForwardError
    def __init__(self, id: _Optional[int] = ..., lookup: _Optional[_Union[_cache_pb2.LookupResponse, _Mapping]] = ..., store: _Optional[_Union[_cache_pb2.StoreResponse, _Mapping]] = ..., complete: _Optional[_Union[_cache_pb2.CompleteResponse, _Mapping]] = ..., error: _Optional[_Union[ForwardError, _Mapping]] = ...) -> None: ...

class ForwardError(_message.Message):
    __slots__ = ("code", "message", "trailing_metadata")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRAILING_METADATA_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    trailing_metadata: _containers.RepeatedCompositeFieldContainer[MetadataEntry]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., trailing_metadata: _Optional[_Iterable[_Union[MetadataEntry, _Mapping]]] = ...) -> None: ...

class MetadataEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
