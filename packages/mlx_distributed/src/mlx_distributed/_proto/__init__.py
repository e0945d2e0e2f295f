"""Code generated from `proto/pipeline.proto`; do not edit by hand."""
