"""Ratings in: read any supported file, clean it, split it, encode its IDs.

The lowest layer above :mod:`recsys_utils.io`: nothing here knows about models.

- :mod:`~recsys_utils.data.formats` sniffs a file's format, separator and columns;
  :mod:`~recsys_utils.data.readers` reads it into the canonical table;
  :mod:`~recsys_utils.data.validate` checks IDs, stars and timestamps row by row.
- :mod:`~recsys_utils.data.cleaning`: duplicates, the iterative k-core, summaries.
- :mod:`~recsys_utils.data.split`: train / validation / test by four policies.
- :mod:`~recsys_utils.data.encoding`: ID vocabularies and :class:`EncodedRatings`, what models fit on.
- :mod:`~recsys_utils.data.synthetic` generates the default data; :mod:`~recsys_utils.data.sample`
  says where it lives and writes it; :mod:`~recsys_utils.data.fetch` downloads Amazon's files.
"""

from __future__ import annotations

from recsys_utils.data.cleaning import CleaningStep, clean_ratings, kcore_filter, summarize
from recsys_utils.data.encoding import EncodedRatings, Encoders, IdEncoder
from recsys_utils.data.readers import read_ratings
from recsys_utils.data.sample import default_data_path, ensure_sample, resolve_data_path
from recsys_utils.data.split import Split, describe_split, require_every_part, split_ratings

__all__ = [
    "CleaningStep",
    "EncodedRatings",
    "Encoders",
    "IdEncoder",
    "Split",
    "clean_ratings",
    "default_data_path",
    "describe_split",
    "ensure_sample",
    "kcore_filter",
    "read_ratings",
    "require_every_part",
    "resolve_data_path",
    "split_ratings",
    "summarize",
]
