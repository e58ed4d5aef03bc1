"""What the public feedback page says, in English, German and Spanish (others fall back to English): the two
open questions, the optional rating with the words at its ends, and the pages around them. Kept here, not in
the page's template, so that `amends surveys check` reads exactly what customers read."""

from __future__ import annotations

from dataclasses import dataclass, fields

from amends.feedback.records import Scale

__all__ = ["LANGUAGES", "PageTexts", "page_texts"]


@dataclass(frozen=True, slots=True)
class PageTexts:
    title: str
    intro: str  # {reference} is what the request is about, or empty
    liked: str  # "What do you like?"
    disliked: str  # "What don't you like?"
    optional: str  # said of each question and of the rating
    rating_csat: str
    rating_nps: str
    rating_effort: str
    csat_ends: tuple[str, str]  # the words at the lowest and the highest value
    nps_ends: tuple[str, str]
    effort_ends: tuple[str, str]
    no_rating: str  # the choice that clears a rating
    submit: str
    update: str
    thanks_title: str
    thanks: str
    you_wrote: str
    editable_until: str  # {until}: a date and time in UTC
    not_editable: str
    say_something: str
    invalid_title: str
    invalid: str
    too_many_title: str
    too_many: str
    closed_title: str
    closed: str

    def rating_question(self, scale: Scale) -> str:
        return {Scale.CSAT: self.rating_csat, Scale.NPS: self.rating_nps, Scale.EFFORT: self.rating_effort}[scale]

    def ends(self, scale: Scale) -> tuple[str, str]:
        return {Scale.CSAT: self.csat_ends, Scale.NPS: self.nps_ends, Scale.EFFORT: self.effort_ends}[scale]

    def all_texts(self) -> list[tuple[str, str]]:
        """Every text with its name, for the surveys check."""
        out: list[tuple[str, str]] = []
        for item in fields(self):
            value = getattr(self, item.name)
            for index, text in enumerate(value if isinstance(value, tuple) else (value,)):
                out.append((item.name if not isinstance(value, tuple) else f"{item.name}[{index}]", text))
        return out


_TEXTS: dict[str, PageTexts] = {
    "en": PageTexts(
        title="What do you like? What don't you like?",
        intro="We would like to know what you think{reference}, in your own words. We read every answer, and we "
        "reply to every one.",
        liked="What do you like?",
        disliked="What don't you like?",
        optional="optional",
        rating_csat="How satisfied are you, all in all?",
        rating_nps="How likely are you to recommend us to a friend or colleague?",
        rating_effort="How easy or hard was it to get what you needed?",
        csat_ends=("not at all satisfied", "very satisfied"),
        nps_ends=("not at all likely", "extremely likely"),
        effort_ends=("very easy", "very hard"),
        no_rating="no rating",
        submit="Send",
        update="Save changes",
        thanks_title="Thank you",
        thanks="Thank you for telling us. Someone on our team reads it and will reply.",
        you_wrote="What you told us",
        editable_until="You can change your answer until {until}.",
        not_editable="Your answer can no longer be changed. If you want to add something, reply to our message.",
        say_something="Please answer one of the questions, or choose a rating.",
        invalid_title="This link does not work",
        invalid="The link may have expired, or been cut short or changed on its way. If you want to tell us "
        "something, reply to our message: we read every reply.",
        too_many_title="Please wait a moment",
        too_many="We received many answers from here in a short time. Please try again in a minute; what you "
        "already sent us is kept.",
        closed_title="Not available right now",
        closed="We cannot take answers here at the moment. Please try again later, or reply to our message.",
    ),
    "de": PageTexts(
        title="Was gefällt Ihnen? Was gefällt Ihnen nicht?",
        intro="Wir möchten gern wissen, was Sie denken{reference}, in Ihren eigenen Worten. Wir lesen jede Antwort "
        "und beantworten jede.",
        liked="Was gefällt Ihnen?",
        disliked="Was gefällt Ihnen nicht?",
        optional="freiwillig",
        rating_csat="Wie zufrieden sind Sie alles in allem?",
        rating_nps="Wie wahrscheinlich ist es, dass Sie uns Freunden oder Kollegen empfehlen?",
        rating_effort="Wie leicht oder schwer war es, zu bekommen, was Sie brauchten?",
        csat_ends=("überhaupt nicht zufrieden", "sehr zufrieden"),
        nps_ends=("überhaupt nicht wahrscheinlich", "äußerst wahrscheinlich"),
        effort_ends=("sehr leicht", "sehr schwer"),
        no_rating="keine Bewertung",
        submit="Senden",
        update="Änderungen speichern",
        thanks_title="Vielen Dank",
        thanks="Danke, dass Sie es uns sagen. Jemand aus unserem Team liest es und antwortet Ihnen.",
        you_wrote="Was Sie uns geschrieben haben",
        editable_until="Sie können Ihre Antwort bis {until} ändern.",
        not_editable="Ihre Antwort kann nicht mehr geändert werden. Wenn Sie etwas ergänzen möchten, antworten Sie "
        "auf unsere Nachricht.",
        say_something="Bitte beantworten Sie eine der Fragen oder wählen Sie eine Bewertung.",
        invalid_title="Dieser Link funktioniert nicht",
        invalid="Der Link ist vielleicht abgelaufen oder wurde unterwegs gekürzt oder verändert. Wenn Sie uns etwas "
        "sagen möchten, antworten Sie auf unsere Nachricht: Wir lesen jede Antwort.",
        too_many_title="Bitte warten Sie einen Moment",
        too_many="Von hier kamen in kurzer Zeit viele Antworten. Bitte versuchen Sie es in einer Minute noch einmal; "
        "was Sie uns schon geschickt haben, bleibt erhalten.",
        closed_title="Gerade nicht verfügbar",
        closed="Wir können hier gerade keine Antworten annehmen. Bitte versuchen Sie es später noch einmal oder "
        "antworten Sie auf unsere Nachricht.",
    ),
    "es": PageTexts(
        title="¿Qué le gusta? ¿Qué no le gusta?",
        intro="Nos gustaría saber qué piensa{reference}, con sus propias palabras. Leemos todas las respuestas y "
        "contestamos a cada una.",
        liked="¿Qué le gusta?",
        disliked="¿Qué no le gusta?",
        optional="opcional",
        rating_csat="En general, ¿cuán satisfecho está?",
        rating_nps="¿Qué probabilidad hay de que nos recomiende a un amigo o colega?",
        rating_effort="¿Qué tan fácil o difícil fue conseguir lo que necesitaba?",
        csat_ends=("nada satisfecho", "muy satisfecho"),
        nps_ends=("nada probable", "muy probable"),
        effort_ends=("muy fácil", "muy difícil"),
        no_rating="sin valoración",
        submit="Enviar",
        update="Guardar cambios",
        thanks_title="Gracias",
        thanks="Gracias por contárnoslo. Alguien de nuestro equipo lo lee y le responderá.",
        you_wrote="Lo que nos ha dicho",
        editable_until="Puede cambiar su respuesta hasta el {until}.",
        not_editable="Su respuesta ya no se puede cambiar. Si quiere añadir algo, responda a nuestro mensaje.",
        say_something="Responda a una de las preguntas o elija una valoración.",
        invalid_title="Este enlace no funciona",
        invalid="Puede que el enlace haya caducado, o que se haya cortado o cambiado por el camino. Si quiere "
        "decirnos algo, responda a nuestro mensaje: leemos todas las respuestas.",
        too_many_title="Espere un momento",
        too_many="Hemos recibido muchas respuestas desde aquí en poco tiempo. Inténtelo de nuevo en un minuto; lo que "
        "ya nos envió se conserva.",
        closed_title="No disponible ahora",
        closed="Ahora no podemos recibir respuestas aquí. Inténtelo más tarde o responda a nuestro mensaje.",
    ),
}
LANGUAGES = tuple(_TEXTS)


def page_texts(language: str | None) -> tuple[str, PageTexts]:
    """The page's language (a primary subtag) and its texts: the customer's, else English."""
    primary = (language or "en").replace("_", "-").split("-", 1)[0].lower()
    if primary in _TEXTS:
        return primary, _TEXTS[primary]
    return "en", _TEXTS["en"]
