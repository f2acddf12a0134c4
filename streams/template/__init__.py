"""The template language and field mapping: parsed once, compiled to closures, sandboxed.

parser (the grammar, ``compile_template``) -> compiler (trees to closures) -> operators
and functions (what a template may call) -> conversions (typed values); fields compiles a
destination's mapping from templates and conversions. Nothing here knows of Kafka, HTTP
or destinations.
"""
