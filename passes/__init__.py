"""fedc's passes and the pass manager.

    from fedc.passes import run
    result = run(module, "verify,strip-locations", print_ir_after_all=True)
    result.module

Every pass is registered once by name (``fedc opt --list-passes`` lists them);
see :mod:`fedc.passes.manager` for pipelines, options and instrumentation.
"""

from .manager import (
    InternalPassError,
    Option,
    Pass,
    PassContext,
    PassVerificationError,
    PipelineResult,
    all_passes,
    lookup,
    parse_pipeline,
    register,
    run,
)

__all__ = [
    "InternalPassError",
    "Option",
    "Pass",
    "PassContext",
    "PassVerificationError",
    "PipelineResult",
    "all_passes",
    "lookup",
    "parse_pipeline",
    "register",
    "run",
]
