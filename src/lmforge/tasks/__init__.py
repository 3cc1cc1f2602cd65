"""Tasks: each file implements the `Task` protocol; TASKS is the one list of task names."""

from lmforge.tasks.base import Task
from lmforge.tasks.classification import TextClassification, TextClassificationParams
from lmforge.tasks.generation import Generation, GenerationParams
from lmforge.tasks.image_captioning import ImageCaptioning, ImageCaptioningParams
from lmforge.tasks.image_text_classification import ImageTextClassification, ImageTextClassificationParams
from lmforge.tasks.language_modeling import LanguageModeling, LanguageModelingParams
from lmforge.tasks.prompt_classification import PromptClassification, PromptClassificationParams
from lmforge.tasks.question_answering import QuestionAnswering, QuestionAnsweringParams
from lmforge.tasks.relation_extraction import RelationExtraction, RelationExtractionParams
from lmforge.tasks.relevance import RelevanceScoring, RelevanceScoringParams
from lmforge.tasks.reward_modeling import RewardModeling, RewardModelingParams
from lmforge.tasks.token_classification import TokenClassification, TokenClassificationParams

#: task name -> (params model, task class)
TASKS: dict[str, tuple[type, type[Task]]] = {
    "text-classification": (TextClassificationParams, TextClassification),
    "token-classification": (TokenClassificationParams, TokenClassification),
    "question-answering": (QuestionAnsweringParams, QuestionAnswering),
    "relation-extraction": (RelationExtractionParams, RelationExtraction),
    "language-modeling": (LanguageModelingParams, LanguageModeling),
    "generation": (GenerationParams, Generation),
    "prompt-classification": (PromptClassificationParams, PromptClassification),
    "image-captioning": (ImageCaptioningParams, ImageCaptioning),
    "image-text-classification": (ImageTextClassificationParams, ImageTextClassification),
    "relevance-scoring": (RelevanceScoringParams, RelevanceScoring),
    "reward-modeling": (RewardModelingParams, RewardModeling),
}


def build_task(params) -> Task:
    """The task object for a validated `task:` section."""
    return TASKS[params.name][1](params)


__all__ = ["TASKS", "Task", "build_task"]
