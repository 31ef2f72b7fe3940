"""Language annotations generated from synthetic scene graphs, and the shared annotation format.

* :mod:`.records`: :class:`AnnotationRecord` and the canonical JSONL reader/writer (import these
  to read or write annotation files anywhere in the project);
* :mod:`.graph`: ``scene_graph.json`` loaded into typed objects, plus the spatial relations;
* :mod:`.references`: the constraint language descriptions are built from, and its evaluator;
* :mod:`.templates`: the wording; :mod:`.generators`: one candidate generator per task family;
* :mod:`.pipeline`: balancing, splits by scene (:mod:`.splits`) and the files on disk;
* :mod:`.baseline`: text-only baselines that show the questions need the scene.

Nothing here imports rclpy or torch.
"""

from .baseline import blind_baselines, exact_match, format_baseline_table, normalize_answer, score_predictions
from .generators import GeneratorConfig
from .graph import SCENE_GRAPH_FILE, RelationConfig, SceneGraph, SceneGraphError, load_scene_graph
from .pipeline import AnnotateConfig, build_dataset, discover_scenes
from .records import TASKS, AnnotationError, AnnotationRecord, Situation, iter_annotations, read_annotations, write_annotations
from .splits import SPLITS, split_scenes

__all__ = [
    "TASKS",
    "SPLITS",
    "AnnotationError",
    "AnnotationRecord",
    "Situation",
    "read_annotations",
    "iter_annotations",
    "write_annotations",
    "SCENE_GRAPH_FILE",
    "SceneGraph",
    "SceneGraphError",
    "RelationConfig",
    "load_scene_graph",
    "split_scenes",
    "AnnotateConfig",
    "GeneratorConfig",
    "build_dataset",
    "discover_scenes",
    "blind_baselines",
    "score_predictions",
    "exact_match",
    "normalize_answer",
    "format_baseline_table",
]
