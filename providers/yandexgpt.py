"""YandexGPT through Yandex AI Studio (``yandex-ai-studio-sdk``, gRPC).

Completions go to ``TextGenerationService.Completion``, a server stream whose every message
holds the whole answer so far: the provider yields only the new part of each. The SDK's own
retries are off (``NoRetryPolicy``): retries before the first token are ``providers.retry``'s.
An ``AIStudio`` object passed in is used as it is.

``YC_API_ENDPOINT`` (``host:port``) sends every gRPC call of a completion there: the
foundation-models service and, for an OAuth token, the IAM exchange (a gateway, a private
endpoint, a test fake). Unset, the SDK discovers Yandex Cloud's endpoints itself.
``YC_VERIFY_SSL=false`` makes the SDK open a plain-text (insecure) gRPC channel.

The Text Generation API serves the models of ``MODELS``; the generation-4 and 32k models were
retired in August 2025, and ``resolve_model`` maps the seed's names to their successors.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc

from providers import base, remote
from providers.base import ChatMessage, GenerationParams, ModelInfo, Usage
from providers.remote import Need, Refusal, RemoteProvider, Reply, Rule, retry_after

if TYPE_CHECKING:
    from yandex_ai_studio_sdk import AIStudio
    from yandex_ai_studio_sdk._types.message import TextMessageDict
    from yandex_ai_studio_sdk.auth import APIKeyAuth, IAMTokenAuth, OAuthTokenAuth

Code = grpc.StatusCode
MODELS = (
    ModelInfo("yandexgpt-lite", "YandexGPT Lite 5", 32768),
    ModelInfo("yandexgpt/latest", "YandexGPT Pro 5", 32768),
    ModelInfo("yandexgpt/rc", "YandexGPT Pro 5.1", 32768),
    ModelInfo("aliceai-llm", "Alice AI LLM", 32768),
)
RETIRED = "Модель {} снята с обслуживания в августе 2025 г.; выбрана её замена {}."
SUCCESSORS = {
    # The seed's spellings of models still served.
    "yandexgpt-lite/latest": ("yandexgpt-lite", ""),
    "aliceai-llm/latest": ("aliceai-llm", ""),
    # The seed's models the API no longer serves.
    "yandexgpt-lite/rc": ("yandexgpt-lite", RETIRED.format("yandexgpt-lite/rc", "YandexGPT Lite 5")),
    "yandexgpt-32k/rc": ("yandexgpt/rc", RETIRED.format("yandexgpt-32k/rc", "YandexGPT Pro 5.1")),
}
# In order of preference: an API key does not expire.
CREDENTIALS = ("yc_api_key", "yc_iam_token", "yc_oauth_token")
SDK = "sdk"  # a code of ours: the SDK refused before any call (an endpoint or auth it cannot use)
ERRORS = (
    Rule(
        base.AuthenticationError,
        "{label} отклонил ключ доступа: проверьте YC_API_KEY или YC_IAM_TOKEN в {where}. IAM-токен "
        "действует не более 12 часов: получите новый (yc iam create-token) или используйте API-ключ "
        "сервисного аккаунта.",
        (Code.UNAUTHENTICATED,),
    ),
    # The key is valid but may not use models in this folder: wrong YC_FOLDER_ID or no role.
    # Every model needs the same role, so choosing another model would not help.
    Rule(
        base.AuthenticationError,
        "{label}: нет доступа к каталогу: проверьте YC_FOLDER_ID в {where} и выдайте аккаунту ключа роль "
        "ai.languageModels.user в этом каталоге.",
        (Code.PERMISSION_DENIED,),
    ),
    Rule(
        base.ModelNotFoundError,
        "{label}: модель «{model}» не найдена: выберите другую модель или проверьте имя и версию "
        "(например, yandexgpt-lite/latest).",
        (Code.NOT_FOUND,),
    ),
    Rule(
        base.ContextTooLongError,
        "{label}: запрос не помещается в контекст модели ({detail}): сократите вопрос, историю или число "
        "фрагментов, либо выберите модель с большим контекстом.",
        (Code.INVALID_ARGUMENT,),
        remote.too_long,
    ),
    Rule(
        base.InvalidRequestError,
        "{label} отклонил запрос: {detail}. Проверьте модель и параметры генерации.",
        (Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION, Code.OUT_OF_RANGE),
    ),
    Rule(
        base.RateLimitError,
        "{label}: превышен лимит запросов или квота каталога.",
        (Code.RESOURCE_EXHAUSTED,),
    ),
    # The server answered, so the endpoint and TLS settings are not the problem.
    Rule(
        base.ProviderUnavailableError,
        "{label} временно недоступен (внутренняя ошибка сервиса): повторите запрос позже.",
        (Code.INTERNAL, Code.UNKNOWN),
    ),
    Rule(
        base.ProviderUnavailableError,
        "{label} недоступен: проверьте сеть (и YC_API_ENDPOINT с YC_VERIFY_SSL, если они заданы), "
        "повторите позже.",
        (Code.UNAVAILABLE,),
    ),
    Rule(
        base.ProviderError,
        "{label}: сервер не поддерживает генерацию текста: проверьте YC_API_ENDPOINT в {where}.",
        (Code.UNIMPLEMENTED,),
    ),
    # Not retried: an endpoint the SDK cannot resolve or auth it cannot use stays so.
    Rule(
        base.ProviderError,
        "{label}: не удалось выполнить запрос ({detail}): проверьте YC_API_ENDPOINT и ключи в {where}.",
        (SDK,),
    ),
)


class YandexGPTProvider(RemoteProvider["AIStudio", Any]):
    """YandexGPT through Yandex AI Studio."""

    name = "yandexgpt"
    label = "YandexGPT"
    catalogue = MODELS  # AI Studio has no listing of foundation models
    needs = (
        Need(("yc_folder_id",), "YC_FOLDER_ID"),
        Need(CREDENTIALS, "YC_API_KEY (или YC_IAM_TOKEN / YC_OAUTH_TOKEN)"),
    )
    errors = ERRORS
    successors = SUCCESSORS
    temperatures = (0.0, 1.0)  # the app's slider goes to 2

    def _auth(self) -> APIKeyAuth | IAMTokenAuth | OAuthTokenAuth:
        """The SDK's auth: ``t1.…`` is an IAM token, ``y0_…`` an OAuth token (the SDK exchanges it
        for IAM tokens, hourly), anything else an API key; as the SDK tells a string."""
        from yandex_ai_studio_sdk.auth import APIKeyAuth, IAMTokenAuth, OAuthTokenAuth

        setting, value = next((name, self.setting(name)) for name in CREDENTIALS if self.setting(name))
        if setting == "yc_iam_token" or re.match(r"t\d\.", value):
            return IAMTokenAuth(value)
        if setting == "yc_oauth_token" or re.match(r"y[0123]_", value):
            self.log.info("YandexGPT: OAuth token is exchanged for IAM tokens; an API key is preferable")
            with warnings.catch_warnings():
                # The SDK warns that OAuth tokens are for personal use; the log has said it.
                warnings.simplefilter("ignore", UserWarning)
                return OAuthTokenAuth(value)
        return APIKeyAuth(value)

    def _build_client(self) -> AIStudio:
        from yandex_ai_studio_sdk import AIStudio
        from yandex_ai_studio_sdk.retry import NoRetryPolicy

        s = self.settings
        # A gRPC target is host:port; forgive a pasted URL.
        endpoint = re.sub(r"^https?://", "", self.setting("yc_api_endpoint")).rstrip("/")
        # With an endpoint, no discovery: completions (and an OAuth exchange) go straight there.
        # Without, an explicit one, so the SDK's own reading of YC_API_ENDPOINT cannot differ from ours.
        route: dict[str, Any] = (
            {"endpoint": None, "service_map": {"ai-foundation-models": endpoint, "iam": endpoint}}
            if endpoint
            else {"endpoint": "api.cloud.yandex.net:443"}
        )
        if not s.yc_verify_ssl:
            self.log.warning("YandexGPT: YC_VERIFY_SSL=false, the gRPC channel is plain text (no TLS)")
        return AIStudio(
            folder_id=s.yc_folder_id,
            auth=self._auth(),
            retry_policy=NoRetryPolicy(),  # type: ignore[no-untyped-call]
            verify=s.yc_verify_ssl,
            **route,
        )

    def _request(self, messages: list[ChatMessage], model: str, params: GenerationParams) -> Iterator[Any]:
        _fix_sdk_done_callbacks()  # also for an injected SDK object
        # A gpt:// URI goes whole as the name (the SDK keeps it so); else "name/version".
        name, _, version = (model, "", "") if model.startswith("gpt://") else model.partition("/")
        gpt = self.client().models.completions(name, model_version=version or "latest")
        gpt = gpt.configure(temperature=params.temperature, max_tokens=params.max_tokens)
        payload: list[TextMessageDict] = [{"role": m.role, "text": m.content} for m in messages]
        return gpt.run_stream(payload, timeout=self.settings.llm_timeout_s)

    def _read(self, result: Any, reply: Reply) -> str:
        """The new text of a cumulative chunk; an answer ends on any status but PARTIAL."""
        if not result.alternatives:
            return ""
        alternative = result.alternatives[0]
        status = alternative.status.name
        if status != "PARTIAL":
            reply.finish = status
            tokens = (result.usage.input_text_tokens, result.usage.completion_tokens)
            reply.usage = Usage(*tokens) if any(tokens) else None  # no count: estimated instead
        if not alternative.text.startswith(reply.text):
            self.log.warning("YandexGPT: a chunk does not continue the text so far; keeping its tail")
        return str(alternative.text[len(reply.text) :])

    def _refusal(self, exc: Exception) -> Refusal | None:
        if isinstance(exc, grpc.RpcError):
            code = _call(exc, "code")
            if code == Code.DEADLINE_EXCEEDED:
                return Refusal(remote.TIMEOUT)
            detail = re.sub(r"^Error in session [^:]*:\s*", "", str(_call(exc, "details") or "").strip())
            metadata = [*(_call(exc, "initial_metadata") or ()), *(_call(exc, "trailing_metadata") or ())]
            return Refusal(code, self._scrub(detail), retry_after=retry_after(metadata))
        from yandex_ai_studio_sdk.exceptions import AIStudioError

        # The SDK's own refusals (an unknown endpoint, auth it cannot use) and such.
        return Refusal(SDK, type(exc).__name__) if isinstance(exc, AIStudioError | RuntimeError) else None


def _call(exc: grpc.RpcError, method: str) -> Any:
    """``exc.<method>()`` of a gRPC error, or None (not every RpcError is a Call)."""
    found = getattr(exc, method, None)
    return found() if callable(found) else None


def _fix_sdk_done_callbacks() -> None:
    """Let the SDK's stream wrapper accept done-callbacks (SDK 0.22.1 with grpcio >= 1.7x).

    grpc.aio channels now register every call with ``add_done_callback``; the SDK's logging
    interceptor returns a wrapper whose ``add_done_callback`` raises ``NotImplementedError``,
    so asyncio logs an ERROR traceback after every streamed answer. The fix forwards the
    callback to the wrapped call, as grpc's own wrappers do. Applied once, to that SDK only.
    """
    import yandex_ai_studio_sdk
    from yandex_ai_studio_sdk._utils import grpc as sdk_grpc

    mixin = getattr(sdk_grpc, "StreamResponseIteratorMixin", None)
    if yandex_ai_studio_sdk.__version__ != "0.22.1" or mixin is None or getattr(mixin, "_rag_fixed", False):
        return

    def add_done_callback(self: Any, callback: Any) -> None:
        if self._call is None:
            callback(self)
        else:
            self._call.add_done_callback(lambda _call: callback(self))

    mixin.add_done_callback = add_done_callback
    mixin._rag_fixed = True
