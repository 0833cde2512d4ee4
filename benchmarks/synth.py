"""Seeded synthetic workspaces for the benchmarks: config, N contacts, a campaign, templates.

    from benchmarks.synth import write_workspace
    config = write_workspace(tmp_dir, contacts=100_000, today=date(2026, 11, 24))

Everything is a function with parameters so each benchmark takes what it needs:
`contact_rows` (the rows alone), `write_contacts` (contacts.csv), `write_config`,
`write_birthday_campaign`, `copy_templates` (the sample birthday templates) and
`write_workspace` (all of them), plus `write_mailmerge_inputs` for the `mailmerge` comparison.
The same seed gives byte-identical files, so runs compare like with like.
"""

from __future__ import annotations

import csv
import random
import shutil
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_TEMPLATES = ROOT / "templates"

# The columns of the sample contacts.csv, in its order.
COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "title",
    "email",
    "birthday",
    "street",
    "street2",
    "postal_code",
    "city",
    "country",
    "preferred_channel",
    "locale",
    "tags",
    "opt_out",
    "next_appointment",
    "favourite_dish",
    "email_consent",
)
FIRST_NAMES = (
    "María", "José", "Lucía", "Carmen", "Javier", "Ana", "Pablo", "Elena", "Íñigo", "Nuria",
    "Begoña", "Álvaro", "Sofía", "Martín", "Inés", "Raúl", "Noelia", "Óscar", "Emma", "Oliver",
    "Charlotte", "James", "Zoë", "Chloé", "François", "Ángela", "Jesús", "Montserrat",
)  # fmt: skip
LAST_NAMES = (
    "López García", "Martín", "Sánchez Ruiz", "Fernández", "Gómez de la Vega", "Díaz",
    "Núñez Romero", "Etxeberria Zubiri", "Arrieta Goñi", "Smith", "O'Brien", "Muñoz",
    "Pérez-Reverte", "Castaño", "Brown", "Ibáñez", "Ruiz de Alarcón", "Vázquez",
)  # fmt: skip
TITLES = ("", "", "", "Sr.", "Sra.", "Dra.", "Dr.")
CITIES = ("Madrid", "Alcalá de Henares", "Getafe", "Móstoles", "Toledo", "Segovia")
STREETS = ("Calle de Alcalá", "Calle Mayor", "Paseo de la Castellana", "Calle de Toledo")
DISHES = ("Cocido madrileño", "Croquetas de jamón", "Merluza a la koskera", "Tortilla de patatas")
DOMAINS = ("example.com", "example.org", "example.net", "correo.example")
TAG_SETS = ("customer", "customer;regular", "customer;newsletter", "customer;vip;newsletter")

CONFIG = """\
# A synthetic workspace for the benchmarks (benchmarks/synth.py). Not a real restaurant.
sender:
  name: "Casa Lucía"
  email: hola@casalucia.example
  reply_to: reservas@casalucia.example
  address:
    street: Calle de la Cava Baja, 12
    postal_code: "28005"
    city: Madrid
    country: ES
  phone: "+34 913 000 000"
  website: https://casalucia.example
  signature: Lucía Fernández
locale: es
timezone: Europe/Madrid
contacts:
  date_format: DMY
  default_country: ES
unsubscribe:
  url: "https://casalucia.example/baja?id={{id}}&token={{token}}"
  mailto: baja@casalucia.example
coupon:
  secret: "benchmark-secret"
  prefix: "CL-"
  length: 8
cadence:
  min_gap_days: {min_gap_days}
  max_messages: {max_messages}
  per_days: 30
delivery:
  method: outbox
"""

BIRTHDAY_CAMPAIGN = """\
name: {name}
kind: birthday
channel: email
audience:
  tags_any: [customer]
priority: 80
days_before: {days_before}
days_after: 0
email:
  subject:
    default: "¡Feliz cumpleaños, {{{{ contact.first_name }}}}!"
    en: "Happy birthday, {{{{ contact.first_name }}}}!"
  text: birthday.txt.j2
  html: {html}
"""

# The sample birthday templates (Spanish, with an English variant) and their HTML layout,
# whose <style> block is inlined into every message.
BIRTHDAY_TEMPLATES = (
    "birthday.txt.j2",
    "birthday.en.txt.j2",
    "birthday.html.j2",
    "birthday.en.html.j2",
    "email_base.html.j2",
)


def birthday_in_window(rng: random.Random, *, today: date, days_before: int) -> date:
    """A birth date whose birthday this year falls in [today, today + days_before]."""
    while True:
        day = today + timedelta(days=rng.randint(0, days_before))
        try:
            return day.replace(year=rng.randint(1940, 2005))
        except ValueError:  # 29 February in a common year: draw again
            continue


def _postal_code(draw: int, *, english: bool) -> str:
    """A postal code of the contact's country: Madrid's for Spain, the City of London's for GB."""
    return f"EC{draw % 4 + 1}A {draw % 10}BB" if english else f"28{draw:03d}"


def contact_rows(
    n: int,
    *,
    seed: int = 1,
    today: date,
    days_before: int = 3,
    english_share: float = 0.2,
) -> Iterator[dict[str, str]]:
    """N contacts, all due for a birthday campaign on `today`; same seed, same rows."""
    rng = random.Random(seed)
    width = max(6, len(str(n)))
    for number in range(1, n + 1):
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        english = rng.random() < english_share
        born = birthday_in_window(rng, today=today, days_before=days_before)
        local = f"{first}.{last.split()[0]}".lower()
        # Plain ASCII local parts, as most real addresses are.
        local = local.translate(str.maketrans("áéíóúüñçàèëï'", "aeiouuncaeei-"))
        yield {
            "id": f"c{number:0{width}d}",
            "first_name": first,
            "last_name": last,
            "title": rng.choice(TITLES),
            "email": f"{local}.{number}@{rng.choice(DOMAINS)}",
            # Both spellings the sample uses: DD/MM/YYYY and ISO.
            "birthday": born.strftime("%d/%m/%Y") if number % 2 else born.isoformat(),
            "street": f"{rng.choice(STREETS)}, {rng.randint(1, 200)}",
            "street2": "",
            # One draw either way, so the other columns stay as they were.
            "postal_code": _postal_code(rng.randint(0, 999), english=english),
            "city": rng.choice(CITIES),
            "country": "GB" if english else "ES",
            "preferred_channel": "email",
            "locale": "en" if english else "es",
            "tags": rng.choice(TAG_SETS),
            "opt_out": "",
            "next_appointment": "",
            "favourite_dish": rng.choice(DISHES),
            # Everyone consented (the birthday gives a coupon: marketing); no draw, so the
            # other columns stay as they were.
            "email_consent": "2025-03-01",
        }


def write_contacts(
    path: Path,
    n: int,
    *,
    seed: int = 1,
    today: date,
    days_before: int = 3,
    english_share: float = 0.2,
    extra: dict[str, str] | None = None,
) -> Path:
    """contacts.csv with N synthetic contacts (plus constant `extra` columns); returns the path."""
    extra = extra or {}
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, *extra])
        writer.writeheader()
        for row in contact_rows(
            n, seed=seed, today=today, days_before=days_before, english_share=english_share
        ):
            writer.writerow({**row, **extra})
    return path


def write_config(path: Path, *, min_gap_days: int = 0, max_messages: int = 30) -> Path:
    """config.yaml for a synthetic workspace: outbox delivery, no quiet days or hours."""
    path.write_text(
        CONFIG.format(min_gap_days=min_gap_days, max_messages=max_messages), encoding="utf-8"
    )
    return path


def write_birthday_campaign(
    folder: Path, *, name: str = "birthday", days_before: int = 3, html: bool = True
) -> Path:
    """campaigns/<name>.yaml: an email-only birthday campaign using the sample templates."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    text = BIRTHDAY_CAMPAIGN.format(
        name=name, days_before=days_before, html="birthday.html.j2" if html else "null"
    )
    path.write_text(text, encoding="utf-8")
    return path


def copy_templates(folder: Path, names: Sequence[str] = BIRTHDAY_TEMPLATES) -> Path:
    """Copy sample templates from the repository's templates/ into `folder`; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(SAMPLE_TEMPLATES / name, folder / name)
    return folder


def write_workspace(
    root: Path,
    *,
    contacts: int,
    seed: int = 1,
    today: date,
    days_before: int = 3,
    min_gap_days: int = 0,
    html: bool = True,
    english_share: float = 0.2,
) -> Path:
    """A whole workspace in `root` where every contact is due on `today`; returns config.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    config = write_config(root / "config.yaml", min_gap_days=min_gap_days)
    write_contacts(
        root / "contacts.csv",
        contacts,
        seed=seed,
        today=today,
        days_before=days_before,
        english_share=english_share,
    )
    write_birthday_campaign(root / "campaigns", days_before=days_before, html=html)
    copy_templates(root / "templates")
    return config


MAILMERGE_TEMPLATE = """\
TO: "{{ first_name }} {{ last_name }}" <{{ email }}>
FROM: "Casa Lucía" <hola@casalucia.example>
REPLY-TO: reservas@casalucia.example
SUBJECT: ¡Feliz cumpleaños, {{ first_name }}!
CONTENT-TYPE: text/markdown

Hola, {{ first_name }}:

Todo el equipo de **Casa Lucía** le desea un día muy feliz, en buena
compañía y con muchos motivos para sonreír.

Nos encantaría celebrarlo con usted: en su próxima visita, el postre corre
de nuestra cuenta. Solo tiene que mostrar este código al hacer su pedido:

**{{ id }}**

(Válido durante los 30 días siguientes a su cumpleaños.)

Gracias por seguir sentándose a nuestra mesa. ¡Esperamos verle muy pronto!

Un saludo muy cordial,
Lucía Fernández y todo el equipo de Casa Lucía

--
Casa Lucía
Calle de la Cava Baja, 12
28005 Madrid
Tel. +34 913 000 000
[casalucia.example](https://casalucia.example)

Si prefiere no recibir más correos nuestros, puede
[darse de baja aquí](https://casalucia.example/baja?id={{ id }}).
"""

MAILMERGE_SERVER = """\
[smtp_server]
host = localhost
port = 25
"""


def write_mailmerge_inputs(folder: Path) -> tuple[Path, Path]:
    """mailmerge's template (Markdown mode: text + HTML) and server config; returns both."""
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / "mailmerge_template.txt"
    template.write_text(MAILMERGE_TEMPLATE, encoding="utf-8")
    server = folder / "mailmerge_server.conf"
    server.write_text(MAILMERGE_SERVER, encoding="utf-8")
    return template, server
