"""OpenAI's fine-tuning graders: string_check, text_similarity, score_model, multi, python.

``validate(dict) -> Grader`` checks a grader up front; ``grade(grader, sample, item, settings)``
scores one sample; ``check_item(grader, item)`` lists the ``{{item.*}}`` fields a training row
lacks. See docs/graders.md.
"""

from preftune.errors import GraderError
from preftune.graders.embeddings import EmbeddingEndpoint
from preftune.graders.grade import (
    Embedder,
    GradeResult,
    GraderSettings,
    check_item,
    grade,
    normalize_sample,
)
from preftune.graders.models import (
    Grader,
    MultiGrader,
    PythonGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
    validate,
    walk,
)
from preftune.graders.score_model import ModelEndpoint

__all__ = [
    "Embedder",
    "EmbeddingEndpoint",
    "GradeResult",
    "Grader",
    "GraderError",
    "GraderSettings",
    "ModelEndpoint",
    "MultiGrader",
    "PythonGrader",
    "ScoreModelGrader",
    "StringCheckGrader",
    "TextSimilarityGrader",
    "check_item",
    "grade",
    "normalize_sample",
    "validate",
    "walk",
]
