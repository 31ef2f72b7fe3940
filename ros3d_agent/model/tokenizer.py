"""Tokenizers and prompts: an offline BPE tokenizer for the small models, loading any local HF
tokenizer (e.g. Qwen2's) with our special tokens, and building chat prompts with label masks.

Why an offline tokenizer: nothing downloads at run time, yet tests and the bundled demo model need
a real tokenizer. :func:`build_offline_tokenizer` trains a byte-level BPE on a corpus this project
writes itself (the annotation templates' vocabulary plus a hand-written English word list), so any
string is still encodable (byte fallback) while the words our questions use become single tokens.

Special tokens (fixed order, so the offline tokenizer's ids are the presets' ids 0..5):
``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (end of a chat turn, the generation stop),
``<image>`` (where the visual tokens are spliced in), ``<ground>`` (the answer of a grounding query,
whose hidden state scores the proposals) and ``<coord>`` (carries a box centre's 3D code in captions).

Prompts follow LLaVA-Video's ``qwen_1_5`` conversation (Qwen chat markup); the user turn is
``<image>`` + the spatial instruction + the question, and the loss only covers the assistant answer.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .configuration import SpecialTokenIds

__all__ = [
    "ENDOFTEXT",
    "IM_START",
    "IM_END",
    "IMAGE_TOKEN",
    "GROUND_TOKEN",
    "COORD_TOKEN",
    "SPECIAL_TOKENS",
    "MODEL_TOKENS",
    "SPATIAL_INSTRUCTION",
    "DEFAULT_SYSTEM_PROMPT",
    "CHAT_TEMPLATE",
    "IGNORE_INDEX",
    "Task",
    "default_corpus",
    "build_offline_tokenizer",
    "LoadedTokenizer",
    "load_tokenizer",
    "special_token_ids",
    "PromptTokens",
    "build_prompt",
    "collate_prompts",
]

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMAGE_TOKEN = "<image>"
GROUND_TOKEN = "<ground>"
COORD_TOKEN = "<coord>"
#: every special token, in the id order of the offline tokenizer
SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END, IMAGE_TOKEN, GROUND_TOKEN, COORD_TOKEN)
#: the tokens this model adds to a pretrained chat tokenizer (Qwen2 already has the other three)
MODEL_TOKENS: tuple[str, ...] = (IMAGE_TOKEN, GROUND_TOKEN, COORD_TOKEN)

#: Video-3D-LLM's spatial instruction, prepended to every question (train and eval alike)
SPATIAL_INSTRUCTION = (
    "The video captures 3D spatial information of a scene. Please focus on the spatial relationships "
    "in the video and answer the following questions."
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
IGNORE_INDEX = -100

#: Qwen-style chat markup: ``<|im_start|>role\ncontent<|im_end|>\n`` per message; with
#: ``add_generation_prompt`` the assistant header is left open for the model to continue.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

Task = Literal["qa", "situated_qa", "ground", "multi_ground", "caption"]
_TASKS: tuple[str, ...] = ("qa", "situated_qa", "ground", "multi_ground", "caption")

# Digits are split one per token (as Qwen2 does) so every number is spelled with the same ten tokens;
# words keep one leading space; runs of punctuation stay together; newlines stand alone.
_PRETOKENIZE_PATTERN = r"'(?:s|t|re|ve|m|ll|d)| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# General English the model should spell compactly beyond the template vocabulary: function words,
# common verbs/adjectives, household and robot vocabulary, numbers and directions. Written for this
# project; frequency order does not matter (the corpus repeats template text far more often).
_GENERAL_ENGLISH = """
the a an and or but not no yes if then so because while when where what which who whom whose why how
is are was were be been being am do does did done have has had having can could will would shall
should may might must i you he she it we they me him her us them my your his its our their mine
yours this that these those there here all any some none each every both either neither few many
much more most less least other another such same different only also just even still again ever
never always often sometimes usually very too quite rather almost about above across after against
along among around at before behind below beneath beside besides between beyond by down during
except for from in inside into near next of off on onto out outside over past since through
throughout to toward towards under underneath until up upon with within without one two three four
five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen
nineteen twenty thirty forty fifty hundred thousand first second third fourth fifth last half
number zero once twice left right front back top bottom middle center centre side corner edge end
north south east west forward backward ahead straight turn facing face look looking see seen saw
find found locate located location position place placed put standing stand sitting sit lying lie
hanging hang leaning lean mounted attached closest nearest farthest furthest far close near nearby
distance meter meters metre metres centimeter centimeters inch inches foot feet tall short long wide
narrow high low big small large little tiny huge medium size shape round square rectangular
circular flat tall thin thick heavy light dark bright color colour colored white black gray grey
red orange yellow green cyan blue purple pink brown beige gold silver wooden metal metallic plastic
glass fabric leather paper ceramic stone soft hard open closed empty full clean dirty new old broken
room kitchen bedroom bathroom office living hallway corridor garage floor wall ceiling door window
stairs staircase counter shelf shelves cabinet drawer dresser nightstand wardrobe closet desk table
chair stool bench sofa couch armchair bed pillow blanket rug carpet curtain blind mirror picture
painting frame clock lamp light monitor screen television tv computer laptop keyboard mouse phone
printer speaker radiator fan heater sink toilet bathtub shower towel soap refrigerator fridge oven
stove microwave dishwasher kettle toaster cup mug glass bottle bowl plate dish pan pot spoon fork
knife box basket bag backpack suitcase trash can bin bucket plant flower vase book books magazine
paper notebook pen pencil toy ball bicycle shoe shoes coat jacket hat umbrella person people robot
object objects thing things item items something nothing anything everything piece part group set
pair row stack pile what's where's it's that's there's i'm you're don't doesn't isn't aren't can't
won't describe description tell show give answer question scene video image view camera frame
spatial relationship relationships focus following captures information detail details please
help helpful assistant user system room's object's color's shown visible hidden behind between
count counted counting many how much than larger smaller bigger taller shorter higher lower closer
nearer farther further largest smallest biggest tallest shortest highest lowest oldest newest
go going goes went come coming move moving moved pick picked grab carry bring take leave walk drive
navigate reach reaching towards around through across along
"""

_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)


# --------------------------------------------------------------------------------------------------
# Offline corpus and tokenizer
# --------------------------------------------------------------------------------------------------
def default_corpus(seed: int = 0, sentences_per_template: int = 12) -> list[str]:
    """The text the offline BPE is trained on, deterministic for a given seed.

    It renders every question, situation and caption template of the annotation generator with
    random categories, colours, sizes and relations (so frequent phrases such as "what color is
    the" merge into few tokens), adds short answers (colours, counts, yes/no, sides), the prompt
    scaffolding (system prompt, spatial instruction, grounding/caption prefixes) and the general
    English word list above.
    """
    from ros3d_agent.scene.annotations import templates as T
    from ros3d_agent.scene.synthetic.catalog import PALETTE, SIZE_CLASSES

    rng = np.random.default_rng(seed)
    labels = list(T.CATEGORY_VOCAB)
    colors = list(PALETTE)
    sides = list(T.SIDE_WHERE.values())

    def noun_phrase(article: str = "the") -> str:
        words = [article]
        if rng.random() < 0.3:
            words.append(T.pick(rng, SIZE_CLASSES))
        if rng.random() < 0.6:
            words.append(T.pick(rng, colors))
        words.append(T.pick(rng, labels))
        if rng.random() < 0.4:
            rel = T.pick(rng, ("on", "next to", "beside", "on top of", "near", "closest to", "farthest from", "under"))
            words += [rel, "the", T.pick(rng, labels)]
        return " ".join(words)

    def fill(field_name: str) -> str:
        """A phrase for one template placeholder (names as in annotations.templates)."""
        if field_name == "pl":
            return T.pluralize(T.pick(rng, labels))
        if field_name == "color":
            return T.pick(rng, colors)
        if field_name in ("thing", "head_a"):
            return T.with_article(f"{T.pick(rng, colors)} {T.pick(rng, labels)}")
        if field_name == "label":
            return T.pick(rng, labels)
        if field_name == "where":
            return T.pick(rng, sides + ["on the " + T.pick(rng, labels), "on the floor", "next to the " + T.pick(rng, labels)])
        if field_name == "near":
            return T.pick(rng, ("", ", near the " + T.pick(rng, labels), " by the wall"))
        if field_name == "desc":
            return f"{T.pick(rng, SIZE_CLASSES)} and {T.pick(rng, colors)}"
        if field_name == "1":  # Multi3DRefer style "{1}": a plural phrase without article
            return T.pluralize(T.pick(rng, labels))
        return noun_phrase()  # x, a, b, s, f, "0": definite descriptions

    formatter = string.Formatter()

    def render(template: str) -> str:
        fields = {name: fill(name) for _, name, _, _ in formatter.parse(template) if name is not None}
        positional = [fields.get(str(i), "") for i in range(2)]
        return template.format(*positional, **{k: v for k, v in fields.items() if not k.isdigit()})

    templates: list[str] = []
    for group in (T.QA, T.SITUATED, T.SITUATION_TEXT):
        for options in group.values():
            templates.extend(options)
    templates.extend(T.MULTI_STYLES)
    templates.extend(T.CAPTIONS)
    templates.extend(T.CAPTION_QUESTIONS)

    corpus: list[str] = []
    for template in templates:
        for _ in range(sentences_per_template):
            text = render(template)
            corpus.append(T.sentence(text) if rng.random() < 0.5 else text)
    # referring expressions in the styles of ScanRefer-like annotations
    for _ in range(20 * sentences_per_template):
        phrase = noun_phrase()
        corpus.append(T.pick(rng, ("find {}.", "locate {}.", "point to {}.", "where is {}?", "{}.")).format(phrase))
    # short answers: the strings exact-match metrics compare
    corpus.extend(colors)
    corpus.extend(labels + [T.pluralize(label) for label in labels])
    corpus.extend(_NUMBER_WORDS)
    corpus.extend(str(n) for n in range(101))
    corpus.extend(f"{rng.uniform(-10, 10):.2f} meters" for _ in range(50))
    corpus.extend(("yes", "no", "left", "right", "in front of me", "behind me", "on my left", "on my right"))
    # prompt scaffolding
    corpus.extend((DEFAULT_SYSTEM_PROMPT, SPATIAL_INSTRUCTION, "system", "user", "assistant"))
    corpus.extend(_GROUND_PREFIX[task] for task in ("ground", "multi_ground"))
    corpus.append(_CAPTION_PREFIX.replace(COORD_TOKEN, "here"))
    corpus.extend(_GENERAL_ENGLISH.split())
    corpus.append(_GENERAL_ENGLISH)
    return corpus


def build_offline_tokenizer(out_dir: str | Path, vocab_size: int = 4096, corpus: Iterable[str] | None = None) -> Any:
    """Train a byte-level BPE offline and save it in Hugging Face format.

    Args:
        out_dir: directory to write ``tokenizer.json``, ``tokenizer_config.json`` and
            ``chat_template.jinja`` to (created if needed).
        vocab_size: upper bound of the vocabulary, special tokens and the 256 byte symbols
            included. A small corpus may yield fewer merges, so the result can be smaller; it is
            never larger, so a model built with ``vocab_size`` embedding rows always fits it.
        corpus: training text; :func:`default_corpus` when omitted.

    Returns:
        The tokenizer, re-loaded from ``out_dir`` with ``AutoTokenizer`` (what every later user
        of the directory gets).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    min_size = 256 + len(SPECIAL_TOKENS)
    if vocab_size < min_size:
        raise ValueError(f"vocab_size must be >= {min_size} (256 byte symbols + {len(SPECIAL_TOKENS)} special tokens), got {vocab_size}")
    texts = list(default_corpus() if corpus is None else corpus)
    if not texts:
        raise ValueError("corpus is empty")

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)

    hf = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens={"image_token": IMAGE_TOKEN, "ground_token": GROUND_TOKEN, "coord_token": COORD_TOKEN},
        model_max_length=32768,
    )
    hf.chat_template = CHAT_TEMPLATE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out))
    return load_tokenizer(out).tokenizer


# --------------------------------------------------------------------------------------------------
# Loading any local tokenizer
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedTokenizer:
    """A tokenizer ready for this model, and what had to change to make it so.

    Attributes:
        tokenizer: the HF tokenizer, with every special token of :data:`SPECIAL_TOKENS` resolvable.
        token_ids: the ids the model config must carry (:class:`SpecialTokenIds`).
        added_tokens: the special tokens that were missing and have been appended.
        needs_resize: the tokenizer now has more entries than the model's embedding table
            (``embedding_rows``), so the LM embeddings must be resized before use. Always ``False``
            when ``embedding_rows`` was not given and nothing was added.
    """

    tokenizer: Any
    token_ids: SpecialTokenIds
    added_tokens: tuple[str, ...]
    needs_resize: bool


def load_tokenizer(local_dir: str | Path, embedding_rows: int | None = None) -> LoadedTokenizer:
    """Load a tokenizer from a LOCAL Hugging Face directory and add our special tokens if missing.

    Works for the offline tokenizer and for pretrained chat tokenizers such as Qwen2's (which has
    ``<|endoftext|>``, ``<|im_start|>`` and ``<|im_end|>`` but not ``<image>``/``<ground>``/``<coord>``).
    Never contacts a hub and never runs code shipped with the directory.

    Args:
        local_dir: directory holding ``tokenizer.json`` (+ ``tokenizer_config.json``).
        embedding_rows: the model's embedding table size; when given, ``needs_resize`` tells
            whether the tokenizer outgrew it. Without it, ``needs_resize`` is ``True`` exactly when
            tokens were added (a pretrained model's table then may or may not have spare rows).
    """
    from transformers import AutoTokenizer

    path = Path(local_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path} (only local directories are supported)")
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{path} holds no tokenizer.json (a fast, Hugging Face format tokenizer is required)")
    _refuse_remote_code(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)

    vocab = tokenizer.get_vocab()
    missing = tuple(tok for tok in SPECIAL_TOKENS if tok not in vocab)
    if missing:
        tokenizer.add_tokens(list(missing), special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = ENDOFTEXT
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    ids = special_token_ids(tokenizer)
    if embedding_rows is None:
        needs_resize = bool(missing)
    else:
        needs_resize = len(tokenizer) > embedding_rows
    return LoadedTokenizer(tokenizer=tokenizer, token_ids=ids, added_tokens=missing, needs_resize=needs_resize)


def _refuse_remote_code(path: Path) -> None:
    """A tokenizer_config with ``auto_map`` asks for custom Python code; we never run it."""
    cfg_file = path / "tokenizer_config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        if cfg.get("auto_map"):
            raise ValueError(f"{cfg_file} requests custom tokenizer code (auto_map); refusing to load remote code")


def special_token_ids(tokenizer: Any) -> SpecialTokenIds:
    """The ids of our special tokens in ``tokenizer``; raises if any is missing (load it with :func:`load_tokenizer`)."""
    vocab = tokenizer.get_vocab()
    missing = [tok for tok in SPECIAL_TOKENS if tok not in vocab]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens {missing}; load it with load_tokenizer() to add them")
    return SpecialTokenIds(
        pad=vocab[tokenizer.pad_token] if tokenizer.pad_token is not None else vocab[ENDOFTEXT],
        endoftext=vocab[ENDOFTEXT],
        im_start=vocab[IM_START],
        im_end=vocab[IM_END],
        image=vocab[IMAGE_TOKEN],
        ground=vocab[GROUND_TOKEN],
        coord=vocab[COORD_TOKEN],
    )


# --------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------
_GROUND_PREFIX = {
    "ground": "Find the object that this description refers to:",
    "multi_ground": "Find all objects that this description refers to (there may be none):",
}
_CAPTION_PREFIX = f"The object is located at {COORD_TOKEN}."


@dataclass(frozen=True)
class PromptTokens:
    """One tokenised conversation.

    ``labels`` equals ``input_ids`` on the assistant answer (and its closing ``<|im_end|>``) and
    :data:`IGNORE_INDEX` everywhere else, so the LM loss only teaches the answer. Without an answer
    (inference), ``input_ids`` ends with the open assistant header and ``labels`` is all ignored.
    """

    input_ids: list[int]
    labels: list[int]
    text: str


def _user_text(task: str, question: str, situation: str | None, spatial_instruction: bool) -> str:
    parts = [IMAGE_TOKEN]
    if spatial_instruction:
        parts.append(SPATIAL_INSTRUCTION)
    if task == "situated_qa":
        if not situation:
            raise ValueError("situated_qa needs a situation text")
        parts.append(f"{situation.strip()} {question.strip()}")
    elif task in _GROUND_PREFIX:
        parts.append(f"{_GROUND_PREFIX[task]} {question.strip()}")
    elif task == "caption":
        parts.append(f"{_CAPTION_PREFIX} {question.strip()}")
    else:
        parts.append(question.strip())
    return "\n".join(parts)


def build_prompt(
    tokenizer: Any,
    *,
    task: Task,
    question: str,
    answer: str | None = None,
    situation: str | None = None,
    system: str = DEFAULT_SYSTEM_PROMPT,
    spatial_instruction: bool = True,
) -> PromptTokens:
    """Tokenise one sample as a chat: system, user (``<image>`` + instruction + question), assistant.

    Args:
        tokenizer: a tokenizer from :func:`load_tokenizer` / :func:`build_offline_tokenizer`.
        task: annotation task. ``situated_qa`` puts ``situation`` before the question; ``caption``
            states the location with ``<coord>`` (the model adds the box centre's 3D code to that
            token's embedding); ``ground``/``multi_ground`` expect the answer ``<ground>``, and an
            answer given for them is replaced by it (the box comes from the grounding head).
        question: the question / referring expression / caption request.
        answer: the target text (training); ``None`` leaves the assistant turn open (inference).
        situation: situated-QA situation text.
        system: system prompt.
        spatial_instruction: prepend Video-3D-LLM's spatial instruction.
    """
    if task not in _TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {_TASKS}")
    if not question or not question.strip():
        raise ValueError("question is empty")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": _user_text(task, question, situation, spatial_instruction)}]
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    if answer is None and task not in _GROUND_PREFIX:
        return PromptTokens(input_ids=list(prompt_ids), labels=[IGNORE_INDEX] * len(prompt_ids), text=prompt_text)
    if task in _GROUND_PREFIX:
        answer = GROUND_TOKEN
    answer_text = f"{answer.strip()}{IM_END}"
    answer_ids = tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    input_ids = list(prompt_ids) + list(answer_ids)
    labels = [IGNORE_INDEX] * len(prompt_ids) + list(answer_ids)
    return PromptTokens(input_ids=input_ids, labels=labels, text=prompt_text + answer_text)


def collate_prompts(prompts: Sequence[PromptTokens], pad_id: int, padding_side: Literal["left", "right"] = "right") -> dict[str, Any]:
    """Pad a list of prompts into ``input_ids``, ``attention_mask`` and ``labels`` tensors (B, L).

    Training pads on the right; batched generation pads on the left so every sequence ends where
    generation starts.
    """
    import torch

    if not prompts:
        raise ValueError("no prompts to collate")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    length = max(len(p.input_ids) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    labels = torch.full((len(prompts), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for i, p in enumerate(prompts):
        n = len(p.input_ids)
        sl = slice(length - n, length) if padding_side == "left" else slice(0, n)
        ids[i, sl] = torch.tensor(p.input_ids, dtype=torch.long)
        labels[i, sl] = torch.tensor(p.labels, dtype=torch.long)
        mask[i, sl] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
