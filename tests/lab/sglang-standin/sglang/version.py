"""Test stand-in (not SGLang): the SGLang version this stand-in plays, from SGLANG_STANDIN_VERSION."""

from sglang.standin.settings import standin_version

__version__ = standin_version()
