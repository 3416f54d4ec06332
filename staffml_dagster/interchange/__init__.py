"""StaffML corpora in and out: the format mapping, a safe importer, an atomic exporter,
and the review (criteria, dedup against generated questions, coverage) of an import."""

from staffml_dagster.interchange.exporter import FORMATS, corpus_rows, export_corpus
from staffml_dagster.interchange.importer import ImportLimits, ImportProblem, ImportResult, import_corpus, write_import
from staffml_dagster.interchange.review import import_coverage, review_imported

__all__ = [
    "FORMATS",
    "ImportLimits",
    "ImportProblem",
    "ImportResult",
    "corpus_rows",
    "export_corpus",
    "import_corpus",
    "import_coverage",
    "review_imported",
    "write_import",
]
