"""``lightly-mm data ...`` commands: moved to :mod:`lightly_mm_plugins.cli_data`
(torch-free at parser build time); this import path is kept.

Example:
    >>> from lightly_mm_plugins.data.commands import add_to_shards_arguments
"""

from __future__ import annotations

from ..cli_data import add_data_arguments, add_to_shards_arguments, to_shards_from_args

__all__ = ["add_data_arguments", "add_to_shards_arguments", "to_shards_from_args"]
