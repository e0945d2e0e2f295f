"""Request bodies of the OpenAI-compatible HTTP API."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SamplingFields(BaseModel):
    """Fields shared by completion and chat completion requests."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Ignored: the cluster's model serves")
    max_tokens: int = Field(256, ge=1, le=32768, description="Tokens to generate")
    temperature: float = Field(0.0, ge=0.0, le=10.0, description="0 is greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass")
    stop: str | list[str] | None = Field(None, description="Stop strings")
    seed: int | None = Field(None, ge=0, description="Seed for sampling")
    stream: bool = Field(False, description="Send Server-Sent Events")

    @field_validator("stop")
    @classmethod
    def _stop_as_list(cls, value):
        if isinstance(value, str):
            return [value]
        if value is not None and len(value) > 4:
            raise ValueError("at most 4 stop strings are allowed")
        return value


class CompletionRequest(SamplingFields):
    """Body of POST /v1/completions."""

    prompt: str | list[int] = Field(..., description="Text or token ids")

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value):
        if len(value) == 0:
            raise ValueError("prompt must not be empty")
        return value


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(SamplingFields):
    """Body of POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(..., min_length=1)
