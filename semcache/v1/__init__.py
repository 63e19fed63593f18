"""Generated protobuf and gRPC code for semcache.v1 (`make protos`; never edit by hand)."""
