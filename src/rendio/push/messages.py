"""What a push says, in the user's language (en, tr, es)."""

from __future__ import annotations

_TEXTS = {
    "en": {
        "title": "Rendio",
        "completed": "Your video is ready.",
        "failed": "Your video could not be made. Your {credits} credits are back.",
    },
    "tr": {
        "title": "Rendio",
        "completed": "Videonuz hazır.",
        "failed": "Videonuz oluşturulamadı. {credits} krediniz iade edildi.",
    },
    "es": {
        "title": "Rendio",
        "completed": "Tu video está listo.",
        "failed": "No se pudo crear tu video. Te devolvimos tus {credits} créditos.",
    },
}


def alert(language: str, status: str, credits: int) -> dict[str, str]:
    texts = _TEXTS.get(language, _TEXTS["en"])
    body = texts["completed" if status == "completed" else "failed"].format(credits=credits)
    return {"title": texts["title"], "body": body}
