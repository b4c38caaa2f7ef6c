"""fedc's passes and the pass manager.

    from fedc.passes import run
    result = run(module, "verify,strip-locations", print_ir_after_all=True)
    result.module

Every pass is registered once by name (``fedc opt --list-passes`` lists them,
and the named pipelines such as ``to-mapreduce``);
see :mod:`fedc.passes.manager` for pipelines, options and instrumentation.
"""

from .manager import (
    PIPELINES,
    InternalPassError,
    NamedPipeline,
    Option,
    Pass,
    PassContext,
    PassVerificationError,
    PipelineResult,
    all_passes,
    all_pipelines,
    lookup,
    parse_pipeline,
    register,
    run,
)

__all__ = [
    "PIPELINES",
    "InternalPassError",
    "NamedPipeline",
    "Option",
    "Pass",
    "PassContext",
    "PassVerificationError",
    "PipelineResult",
    "all_passes",
    "all_pipelines",
    "lookup",
    "parse_pipeline",
    "register",
    "run",
]
