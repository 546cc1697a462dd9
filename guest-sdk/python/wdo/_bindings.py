"""Where componentize-py put the bindings this SDK uses. An object's world also imports
`wasi:http`, whose `types` interface shares the name of wdo's: componentize-py then calls them
`wdo_object_types` and `wasi_http_types`; a worker's world has only `types`."""

try:
    from wit_world.imports import wdo_object_types as wdo_types  # noqa: F401
except ImportError:
    from wit_world.imports import types as wdo_types  # noqa: F401
