"""The HTTP front's OpenAPI 3.1 description, served at `GET /openapi.json`.

What the front accepts is OpenAI's chat completions request: the schema below says what
the front itself checks (and refuses with a 400 naming the `param`), no more: any other
field is allowed, travels upstream as sent and keys the cache's scope. A schemathesis run
holds the running server to it (tests/test_openapi.py).
"""

from __future__ import annotations

from typing import Any

from semcache import keys

_NULLABLE_NUMBER = {"type": ["number", "null"]}
_TOKENS = {"type": ["integer", "null"], "minimum": 1, "maximum": 2**32 - 1}

_TEXT_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string"}},
    # A text part's text must be a string; other parts (images, audio) bypass the cache.
    "if": {"properties": {"type": {"const": "text"}}},
    "then": {"required": ["text"], "properties": {"text": {"type": "string"}}},
}

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "examples": ["system", "user", "assistant", "tool"]},
        "content": {
            "oneOf": [
                {"type": "string"},
                {"type": "null"},
                {"type": "array", "items": _TEXT_PART},
            ]
        },
    },
}

_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "description": (
        "OpenAI's chat completion request. The leading system messages, the turns before "
        "the last user message, the model and every other field that can change the answer "
        "form the cache's scope; the last user message is the prompt. Other fields are "
        "allowed and sent upstream as they are."
    ),
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "stream": {"type": "boolean", "default": False},
        "stream_options": {
            "type": ["object", "null"],
            "properties": {"include_usage": {"type": "boolean"}},
        },
        **{name: _NULLABLE_NUMBER for name in keys.FLOAT_PARAMS},
        "max_tokens": _TOKENS,
        "max_completion_tokens": _TOKENS,
        "seed": {"type": ["integer", "null"], "minimum": -(2**63) + 1, "maximum": 2**63 - 1},
        "stop": {
            "oneOf": [
                {"type": "string"},
                {"type": "null"},
                {"type": "array", "items": {"type": "string"}},
            ]
        },
        "n": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": 1,
            "description": "One answer per request: n > 1 is refused.",
        },
        "tools": {
            "type": ["array", "null"],
            "description": 'Refused unless tool_choice is "none": call the upstream directly.',
        },
        "functions": {"type": ["array", "null"], "description": "As tools."},
        "logprobs": {
            "type": ["boolean", "null"],
            "enum": [False, None],
            "description": "Log probabilities are refused.",
        },
    },
    # One text answer per request: tools (or functions) only with tool_choice "none".
    "allOf": [
        {
            "if": {"required": [name], "properties": {name: {"type": "array", "minItems": 1}}},
            "then": {"required": ["tool_choice"], "properties": {"tool_choice": {"const": "none"}}},
        }
        for name in ("tools", "functions")
    ],
}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_USAGE = {
    "type": "object",
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    "properties": {
        "prompt_tokens": {"type": "integer", "minimum": 0},
        "completion_tokens": {"type": "integer", "minimum": 0},
        "total_tokens": {"type": "integer", "minimum": 0},
        "prompt_tokens_details": {
            "type": "object",
            "description": "On a hit: the original prompt tokens, all marked cached.",
            "properties": {"cached_tokens": {"type": "integer", "minimum": 0}},
        },
    },
}

_COMPLETION = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices", "usage"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": {"const": 0},
                    "message": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"const": "assistant"},
                            "content": {"type": "string"},
                        },
                    },
                    "finish_reason": {"type": "string"},
                },
            },
        },
        "usage": _USAGE,
    },
}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


_CACHE_HEADERS = {
    "x-semcache": _header(
        "What the cache did: hit, miss, or bypass (a request it cannot key: non-text "
        "content, beyond its size limits, or Cache-Control: no-cache).",
        {"enum": ["hit", "miss", "bypass"]},
    ),
    "x-semcache-similarity": _header(
        "Cosine similarity in [-1, 1] of the best cached candidate, on hits and on misses "
        "that had one (absent when the scope held nothing to compare).",
        {"type": "string", "pattern": r"^-?\d+\.\d{4}$"},
    ),
    "x-semcache-threshold": _header(
        "The similarity the hit policy required for this request (beside the similarity).",
        {"type": "string", "pattern": r"^-?\d+\.\d{4}$"},
    ),
    "x-semcache-entry": _header("The matched entry (a hit) or the stored one (a miss)."),
}
_RETRY_AFTER = {
    "Retry-After": _header(
        "Seconds (or an HTTP date) before retrying: the upstream's own on its 429/503, 1 "
        "when the cache itself is overloaded or has no shard for the call."
    )
}


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry:
        response["headers"] = _RETRY_AFTER
    return response


def document(models: list[str]) -> dict[str, Any]:
    """The OpenAPI document of a front serving `models` (listed by GET /v1/models)."""
    tenant_header = {
        "name": "X-Tenant-ID",
        "in": "header",
        "required": False,
        "description": (
            'The tenant when the router runs without tokens ("default" if absent): at most '
            "256 bytes of UTF-8, no whitespace or control characters."
        ),
        "schema": {
            "type": "string",
            "maxLength": 256,
            "pattern": r"^[^\s\x00-\x1f\x7f-\xa0\xad]*$",
        },
    }
    cache_control = {
        "name": "Cache-Control",
        "in": "header",
        "required": False,
        "description": "no-cache skips the lookup; no-store keeps the answer out.",
        "schema": {"type": "string", "examples": ["no-cache", "no-store", "no-cache, no-store"]},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "semcache OpenAI-compatible front",
            "version": "1",
            "description": (
                "A semantic cache in front of an OpenAI-compatible LLM: point an OpenAI SDK's "
                "base_url here. A prompt that means the same as one answered before, in the "
                "same scope, gets the stored answer."
            ),
        },
        "components": {
            "schemas": {
                "ChatCompletionRequest": _REQUEST,
                "ChatCompletion": _COMPLETION,
                "Error": _ERROR,
            },
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The API token, when the router runs with tokens.",
                }
            },
        },
        "security": [{}, {"token": []}],
        "paths": {
            "/v1/chat/completions": {
                "post": {
                    "operationId": "createChatCompletion",
                    "parameters": [tenant_header, cache_control],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": (
                                "The answer: a chat.completion, or with stream=true a stream "
                                "of chat.completion.chunk events ending in [DONE]."
                            ),
                            "headers": _CACHE_HEADERS,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ChatCompletion"}
                                },
                                "text/event-stream": {
                                    # Each event: a chat.completion.chunk as JSON, an error
                                    # as JSON, or the final "[DONE]".
                                    "schema": {
                                        "type": "object",
                                        "required": ["data"],
                                        "properties": {"data": {"type": "string"}},
                                    }
                                },
                            },
                        },
                        "400": _error("The request is not one the front can serve (`param`)."),
                        "401": _error("No token, or an unknown one (tokens on)."),
                        "403": _error("The token may not use the tenant named."),
                        "413": _error("The body is over 16 MiB."),
                        "429": _error("Too many requests: the upstream's or the cache's.", True),
                        "503": _error("No shard could serve the call.", True),
                        "504": _error("The call's deadline passed."),
                        "default": _error(
                            "The upstream's own error, with its status, type, code and param."
                        ),
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "operationId": "listModels",
                    "responses": {
                        "200": {
                            "description": "The models the front was started with.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["object", "data"],
                                        "properties": {
                                            "object": {"const": "list"},
                                            "data": {
                                                "type": "array",
                                                "maxItems": len(models),
                                                "items": {
                                                    "type": "object",
                                                    "required": ["id", "object"],
                                                    "properties": {
                                                        "id": {"enum": models or [""]},
                                                        "object": {"const": "model"},
                                                    },
                                                },
                                            },
                                        },
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {
                        status: {
                            "description": description,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status"],
                                        "properties": {"status": {"enum": [value]}},
                                    }
                                }
                            },
                        }
                        for status, description, value in (
                            ("200", "The router is serving.", "ok"),
                            ("503", "The router is not serving.", "unavailable"),
                        )
                    },
                }
            },
        },
    }
