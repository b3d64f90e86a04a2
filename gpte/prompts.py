"""Prompt templates, query/document roles and the character spans of the user's text.

A prompt is a template with a ``{text}`` slot (``"Instruct: {task}\\nQuery: {text}"``) or, as in
sentence-transformers, a plain prefix (``"query: "``), which means ``prefix + "{text}"``. A template may
repeat ``{text}`` (echo embeddings) and may carry a ``{task}`` slot filled per call. Formatting keeps the
character span of every copy of the user's text so that tokenization can tell prompt tokens from text
tokens (prompt exclusion, span pooling).

Slots are replaced literally (no ``str.format``), so braces elsewhere in a prompt are kept as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TEXT_SLOT = "{text}"
TASK_SLOT = "{task}"
ROLES = ("query", "document")


@dataclass(frozen=True)
class FormattedText:
    """A text placed in its prompt.

    Attributes:
        text: the string given to the tokenizer.
        text_spans: ``(start, end)`` character offsets of each copy of the user's text, in order.
    """

    text: str
    text_spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt: a template with one or more ``{text}`` slots and at most one kind of ``{task}`` slot.

    Use :meth:`parse` to build one from a user string (a string without ``{text}`` is a prefix).
    """

    template: str

    def __post_init__(self) -> None:
        if not isinstance(self.template, str):
            raise TypeError(f"a prompt must be a string, got {type(self.template).__name__}")
        if TEXT_SLOT not in self.template:
            raise ValueError(
                f"prompt template {self.template!r} has no {TEXT_SLOT} slot; "
                "use PromptTemplate.parse() to treat a string as a prefix"
            )

    @classmethod
    def parse(cls, value: str) -> PromptTemplate:
        """``value`` with a ``{text}`` slot is a template; without one it is a prefix (sentence-transformers)."""
        if not isinstance(value, str):
            raise TypeError(f"a prompt must be a string, got {type(value).__name__}")
        return cls(value if TEXT_SLOT in value else value + TEXT_SLOT)

    @property
    def needs_task(self) -> bool:
        return TASK_SLOT in self.template

    @property
    def prefix(self) -> str | None:
        """The prefix when the template is ``prefix + "{text}"`` (the sentence-transformers form), else None."""
        head = self.template[: -len(TEXT_SLOT)]
        if self.template.endswith(TEXT_SLOT) and TEXT_SLOT not in head and not self.needs_task:
            return head
        return None

    def fill(self, task: str | None) -> PromptTemplate:
        """Return the template with its ``{task}`` slot filled.

        Raises:
            ValueError: the template has a ``{task}`` slot and ``task`` is None, or ``task`` is given
                for a template without that slot.
        """
        if task is None:
            if self.needs_task:
                raise ValueError(f"prompt {self.template!r} has a {TASK_SLOT} slot: pass task='...' to fill it")
            return self
        if not isinstance(task, str):
            raise TypeError(f"task must be a string, got {type(task).__name__}")
        if not self.needs_task:
            raise ValueError(f"task={task!r} was given but prompt {self.template!r} has no {TASK_SLOT} slot")
        return PromptTemplate(self.template.replace(TASK_SLOT, task))

    def format(self, text: str, lowercase: bool = False) -> FormattedText:
        """Place ``text`` in every ``{text}`` slot; ``lowercase`` lowercases prompt and text alike."""
        if self.needs_task:
            raise ValueError(f"prompt {self.template!r} has an unfilled {TASK_SLOT} slot: pass task='...'")
        pieces = self.template.split(TEXT_SLOT)
        if lowercase:
            pieces, text = [piece.lower() for piece in pieces], text.lower()
        out, spans, position = [pieces[0]], [], len(pieces[0])
        for piece in pieces[1:]:
            spans.append((position, position + len(text)))
            out += [text, piece]
            position += len(text) + len(piece)
        return FormattedText("".join(out), tuple(spans))


@dataclass(frozen=True)
class PromptSet:
    """Several templates for one input; the model averages the vectors it makes with each (MetaEOL,
    Lei et al. 2024, "Meta-task prompting elicits embeddings from large language models").

    Every template must have a ``{text}`` slot (a set of plain prefixes would be ambiguous).
    """

    templates: tuple[PromptTemplate, ...]

    def __post_init__(self) -> None:
        if len(self.templates) < 2 or not all(isinstance(t, PromptTemplate) for t in self.templates):
            raise ValueError(f"a prompt set needs at least two PromptTemplates, got {self.templates!r}")

    @classmethod
    def parse(cls, values: list[str] | tuple[str, ...]) -> PromptSet:
        """Build from template strings, each with a ``{text}`` slot (refused otherwise, the template shown)."""
        for value in values:
            if not isinstance(value, str) or TEXT_SLOT not in value:
                raise ValueError(f"each template of a prompt set needs a {TEXT_SLOT} slot; got {value!r}")
        return cls(tuple(PromptTemplate(value) for value in values))

    @property
    def needs_task(self) -> bool:
        return any(t.needs_task for t in self.templates)

    @property
    def prefix(self) -> None:
        return None

    @property
    def template(self) -> list[str]:
        return [t.template for t in self.templates]

    def fill(self, task: str | None) -> PromptSet:
        """Fill the ``{task}`` slot of every template that has one (see :meth:`PromptTemplate.fill`)."""
        if task is not None and not self.needs_task:
            raise ValueError(f"task={task!r} was given but no template of {self.template!r} has a {TASK_SLOT} slot")
        return PromptSet(tuple(t.fill(task) if t.needs_task or task is None else t for t in self.templates))


Prompt = PromptTemplate | PromptSet


def parse_prompt(value: str | list[str] | tuple[str, ...]) -> Prompt:
    """A string is a template or prefix (:meth:`PromptTemplate.parse`); a list of templates is a PromptSet."""
    if isinstance(value, (list, tuple)):
        return PromptSet.parse(value)
    return PromptTemplate.parse(value)


@dataclass
class Prompts:
    """A model's named prompts, its default prompt, and how ``role`` and ``prompt`` pick one.

    Attributes:
        templates: prompt name -> template. Names ``query`` and ``document`` serve the roles of the same name.
        default: name of the prompt used when a call names neither prompt nor role, or None.
    """

    templates: dict[str, Prompt] = field(default_factory=dict)
    default: str | None = None

    def __post_init__(self) -> None:
        if self.default is not None and self.default not in self.templates:
            raise ValueError(f"default prompt {self.default!r} is not one of the prompts {sorted(self.templates)}")

    @classmethod
    def from_strings(cls, prompts: dict[str, str | list[str]] | None, default: str | None = None) -> Prompts:
        """Build from ``{name: template-or-prefix}`` (the sentence-transformers ``prompts`` mapping); a list
        of templates is a :class:`PromptSet`."""
        prompts = prompts or {}
        if not isinstance(prompts, dict):
            raise TypeError(f"prompts must be a dict of name -> template, got {type(prompts).__name__}")
        return cls({name: parse_prompt(value) for name, value in prompts.items()}, default or None)

    def to_strings(self) -> dict[str, str | list[str]]:
        return {name: template.template for name, template in self.templates.items()}

    def resolve(self, prompt: str | Prompt | None, role: str | None) -> Prompt | None:
        """Choose the prompt for a call.

        Order: ``prompt`` (a prompt name of this model, else a literal template or prefix); then ``role``
        (the prompt of that name; ``query``/``document`` without a prompt mean no prompt); then the default.

        Raises:
            ValueError: ``role`` is neither a role nor a prompt name (the allowed values are listed).
        """
        if isinstance(prompt, (PromptTemplate, PromptSet)):
            return prompt
        if prompt is not None:
            return self.templates.get(prompt) or PromptTemplate.parse(prompt)
        if role is not None:
            if role in self.templates:
                return self.templates[role]
            if role in ROLES:
                return None
            allowed = sorted(set(ROLES) | set(self.templates))
            raise ValueError(f"unknown role {role!r}; allowed roles: {', '.join(allowed)}")
        return self.templates[self.default] if self.default else None
