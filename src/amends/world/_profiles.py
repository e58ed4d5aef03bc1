"""Customers' profiles: how the company would reach them (name, email, phone, postal address, language, zone).

Every customer's profile arrives as a `customer.profile` event at the start of the window, as if the
company's customer records had been loaded then; a few customers change their email, phone or address
later (`customer.updated`, with only the fields that changed). Outreach reads these events to address its
messages. Some customers gave no email (they get a hand-written card), a few no address either (a task for
staff), and some prefer texts or cards.

Names, streets and cities are common ones of the customer's home country, written in its own script, with
its own address layout; emails are at example.com, example.net or example.org (reserved, RFC 2606), so no
message can ever reach a real person. Profiles draw from a generator of their own: the rest of the world
is the same with or without them.
"""

# ruff: noqa: RUF001 - names in their own scripts: the Turkish dotless i is a letter of its own, not a typo

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from functools import cache

from amends.world._customers import Customer
from amends.world._engine import Engine, Envelope
from amends.world._weights import Weights
from amends.world._zones import Zone

__all__ = ["Profiles"]

_NO_EMAIL = 0.08  # no email on file: a card
_NO_ADDRESS = 0.15  # of those, no postal address either: a task for staff
_CHANNELS = Weights((None, "sms", "card"), (90, 7, 3))  # the customer's own preference, if any
_UPDATED = 0.03  # customers who change a detail during the window
_DOMAINS = ("example.com", "example.net", "example.org")


@dataclass(frozen=True, slots=True)
class _Locale:
    language: str  # a BCP 47 tag
    country: str  # as written on an envelope posted within the country's region
    calling_code: str
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    streets: tuple[str, ...]
    cities: tuple[tuple[str, str], ...]  # (city, a postcode pattern: # a digit, @ a letter)
    layout: str  # the address's lines, separated by |, with {street} {number} {postcode} {city} {CITY} {country}
    # For a script other than Latin, the names in Latin letters, in the same order: for the email address.
    latin_first: tuple[str, ...] = ()
    latin_last: tuple[str, ...] = ()


def _locale(
    language: str,
    country: str,
    code: str,
    first: str,
    last: str,
    streets: str,
    cities: str,
    layout: str,
    latin: tuple[str, str] = ("", ""),
) -> _Locale:
    def words(text: str) -> tuple[str, ...]:
        return tuple(text.split(", ")) if text else ()

    locale = _Locale(
        language,
        country,
        code,
        words(first),
        words(last),
        words(streets),
        tuple((city, pattern) for city, pattern in (c.split(" = ") for c in cities.split("; "))),
        layout,
        words(latin[0]),
        words(latin[1]),
    )
    if len(locale.latin_first) not in (0, len(locale.first_names)) or len(locale.latin_last) not in (
        0,
        len(locale.last_names),
    ):
        raise ValueError(f"{language}: the names in Latin letters do not match the names one for one")
    return locale


_DE = _locale(
    "de-DE",
    "Deutschland",
    "+49",
    "Anna, Lukas, Lea, Jonas, Sophie, Leon, Marie, Felix, Hannah, Paul, Emma, Jürgen, Sabine, Günter, Ursula",
    "Müller, Schmidt, Schneider, Fischer, Weber, Meyer, Wagner, Becker, Schulz, Hoffmann, Koch, Richter, Köhler, Weiß",
    "Hauptstraße, Bahnhofstraße, Gartenweg, Schillerstraße, Lindenallee, Goethestraße, Am Mühlbach",
    "Berlin = 10###; Hamburg = 20###; München = 80###; Köln = 50###; Leipzig = 04###",
    "{street} {number}|{postcode} {city}|{country}",
)
_AT = _locale(
    "de-AT",
    "Österreich",
    "+43",
    "Lukas, Anna, Florian, Katharina, Tobias, Julia, Stefan, Theresa, Johann, Elisabeth, Andreas, Magdalena",
    "Gruber, Huber, Wagner, Pichler, Moser, Steiner, Hofer, Leitner, Berger, Fuchs, Eder, Fischer",
    "Mariahilfer Straße, Praterstraße, Landstraßer Hauptstraße, Kirchengasse, Schönbrunner Straße",
    "Wien = 1###; Graz = 80##; Linz = 40##; Salzburg = 50##",
    "{street} {number}|{postcode} {city}|{country}",
)
_FR = _locale(
    "fr-FR",
    "France",
    "+33",
    "Camille, Léa, Louis, Hugo, Chloé, Manon, Jules, Gabriel, Inès, Théo, Élodie, François, Hélène, Noël",
    "Martin, Bernard, Dubois, Thomas, Robert, Richard, Petit, Durand, Leroy, Moreau, Lefèvre, Girard, Rousseau",
    "rue de la République, avenue Jean Jaurès, rue Victor Hugo, boulevard Voltaire, rue des Écoles, place du Marché",
    "Paris = 750##; Lyon = 690##; Marseille = 130##; Toulouse = 310##; Nantes = 440##",
    "{number} {street}|{postcode} {CITY}|{country}",
)
_ES = _locale(
    "es-ES",
    "España",
    "+34",
    "Lucía, Hugo, Martina, Pablo, Sofía, Álvaro, María, Javier, Carmen, Alejandro, Paula, Íñigo, Begoña",
    "García, Fernández, González, Rodríguez, López, Martínez, Sánchez, Pérez, Gómez, Martín, Jiménez, Muñoz",
    "Calle Mayor, Calle de Alcalá, Avenida de la Constitución, Calle del Sol, Paseo de Gracia, Calle Real",
    "Madrid = 280##; Barcelona = 080##; Valencia = 460##; Sevilla = 410##; Bilbao = 480##",
    "{street} {number}|{postcode} {city}|{country}",
)
_IT = _locale(
    "it-IT",
    "Italia",
    "+39",
    "Giulia, Francesco, Sofia, Alessandro, Aurora, Lorenzo, Chiara, Matteo, Giorgia, Niccolò, Federica, Luca",
    "Rossi, Russo, Ferrari, Esposito, Bianchi, Romano, Colombo, Ricci, Marino, Greco, Bruno, Gallo, De Luca",
    "Via Roma, Via Garibaldi, Corso Vittorio Emanuele, Via Dante, Via Mazzini, Piazza del Popolo",
    "Roma = 001##; Milano = 201##; Napoli = 801##; Torino = 101##; Bologna = 401##",
    "{street} {number}|{postcode} {city}|{country}",
)
_NL = _locale(
    "nl-NL",
    "Nederland",
    "+31",
    "Daan, Emma, Sem, Julia, Lucas, Tess, Bram, Sophie, Jesse, Fleur, Thijs, Anouk, Sanne, Joost",
    "de Jong, Jansen, de Vries, van den Berg, van Dijk, Bakker, Janssen, Visser, Smit, Meijer, de Boer, Mulder",
    "Kerkstraat, Dorpsstraat, Molenweg, Stationsweg, Prinsengracht, Schoolstraat, Julianalaan",
    "Amsterdam = 10## @@; Rotterdam = 30## @@; Utrecht = 35## @@; Den Haag = 25## @@; Eindhoven = 56## @@",
    "{street} {number}|{postcode} {city}|{country}",
)
_PL = _locale(
    "pl-PL",
    "Polska",
    "+48",
    "Zofia, Jakub, Julia, Antoni, Maja, Jan, Zuzanna, Szymon, Łukasz, Małgorzata, Wojciech, Agnieszka, Paweł",
    "Nowak, Kowalski, Wiśniewski, Wójcik, Kowalczyk, Kamiński, Lewandowski, Zieliński, Szymański, Woźniak",
    "ul. Długa, ul. Kwiatowa, ul. Polna, ul. Leśna, ul. Słoneczna, ul. Mickiewicza, ul. Kościuszki",
    "Warszawa = 00-###; Kraków = 30-###; Łódź = 90-###; Wrocław = 50-###; Gdańsk = 80-###",
    "{street} {number}|{postcode} {city}|{country}",
)
_GB = _locale(
    "en-GB",
    "United Kingdom",
    "+44",
    "Oliver, Amelia, George, Isla, Harry, Ava, Noah, Mia, Jack, Olivia, Charlotte, Arthur, Siobhan, Rhys",
    "Smith, Jones, Williams, Taylor, Brown, Davies, Evans, Wilson, Thomas, Johnson, Roberts, Walker, O'Brien",
    "High Street, Station Road, Church Lane, Victoria Road, Park Avenue, Mill Lane, Queen Street",
    "London = @@# #@@; Manchester = M# #@@; Birmingham = B# #@@; Leeds = LS# #@@; Bristol = BS# #@@",
    "{number} {street}|{city}|{postcode}|{country}",
)
_IE = _locale(
    "en-IE",
    "Ireland",
    "+353",
    "Seán, Aoife, Conor, Saoirse, Cian, Niamh, Oisín, Róisín, Darragh, Ciara, Pádraig, Síle",
    "Murphy, Kelly, O'Sullivan, Walsh, Byrne, Ryan, O'Connor, O'Neill, Doyle, McCarthy, Gallagher, Kennedy",
    "Main Street, Church Road, Strand Road, Grafton Street, Bridge Street, Mary Street",
    "Dublin = D## @#@#; Cork = T## @#@#; Galway = H## @#@#; Limerick = V## @#@#",
    "{number} {street}|{city}|{postcode}|{country}",
)
_PT = _locale(
    "pt-PT",
    "Portugal",
    "+351",
    "Maria, João, Beatriz, Tomás, Leonor, Rodrigo, Matilde, Martim, Inês, Gonçalo, Carolina, Duarte",
    "Silva, Santos, Ferreira, Pereira, Oliveira, Costa, Rodrigues, Martins, Jesus, Sousa, Gonçalves, Conceição",
    "Rua Augusta, Avenida da Liberdade, Rua do Carmo, Rua de Santa Catarina, Travessa do Sol",
    "Lisboa = 1###-###; Porto = 40##-###; Braga = 47##-###; Coimbra = 30##-###",
    "{street} {number}|{postcode} {city}|{country}",
)
_GR = _locale(
    "el-GR",
    "Ελλάδα",
    "+30",
    "Γιώργος, Μαρία, Δημήτρης, Ελένη, Νίκος, Αικατερίνη, Κώστας, Σοφία, Γιάννης, Αναστασία, Παναγιώτης",
    "Παπαδόπουλος, Παπαδοπούλου, Νικολάου, Γεωργίου, Ιωάννου, Οικονόμου, Βασιλείου, Αθανασίου, Μακρής",
    "Οδός Ερμού, Λεωφόρος Συγγρού, Οδός Αιόλου, Οδός Πατησίων, Οδός Σταδίου",
    "Αθήνα = 1## ##; Θεσσαλονίκη = 5## ##; Πάτρα = 2## ##; Ηράκλειο = 7## ##",
    "{street} {number}|{postcode} {city}|{country}",
    (
        "giorgos, maria, dimitris, eleni, nikos, aikaterini, kostas, sofia, giannis, anastasia, panagiotis",
        "papadopoulos, papadopoulou, nikolaou, georgiou, ioannou, oikonomou, vasileiou, athanasiou, makris",
    ),
)
_FI = _locale(
    "fi-FI",
    "Suomi",
    "+358",
    "Aino, Eino, Helmi, Väinö, Sofia, Leo, Aada, Onni, Ella, Eetu, Päivi, Jukka, Sari, Mikko",
    "Korhonen, Virtanen, Mäkinen, Nieminen, Mäkelä, Hämäläinen, Laine, Heikkinen, Koskinen, Järvinen",
    "Mannerheimintie, Aleksanterinkatu, Hämeenkatu, Kauppakatu, Koulukatu, Puistotie",
    "Helsinki = 00###; Tampere = 33###; Turku = 20###; Oulu = 90###",
    "{street} {number}|{postcode} {city}|{country}",
)
_TR = _locale(
    "tr-TR",
    "Türkiye",
    "+90",
    "Zeynep, Mehmet, Elif, Mustafa, Ayşe, Ahmet, Fatma, Emre, Şule, Burak, Gülşen, İbrahim, Çağla",
    "Yılmaz, Kaya, Demir, Şahin, Çelik, Yıldız, Yıldırım, Öztürk, Aydın, Özdemir, Arslan, Doğan, Kılıç",
    "Atatürk Caddesi, İstiklal Caddesi, Cumhuriyet Caddesi, Bağdat Caddesi, Gazi Sokak",
    "İstanbul = 34###; Ankara = 06###; İzmir = 35###; Bursa = 16###",
    "{street} {number}|{postcode} {city}|{country}",
)
_AE = _locale(
    "en-AE",
    "United Arab Emirates",
    "+971",
    "Mohammed, Fatima, Ahmed, Aisha, Omar, Mariam, Khalid, Noura, Yousef, Layla, Hamdan, Sara",
    "Al Mansoori, Al Hashemi, Al Mazrouei, Al Suwaidi, Al Nuaimi, Khan, Haddad, Rahman, Saleh, Nasser",
    "Sheikh Zayed Road, Al Wasl Road, Jumeirah Beach Road, Al Maktoum Street, Khalid Bin Al Waleed Road",
    "Dubai = PO Box #####; Abu Dhabi = PO Box #####; Sharjah = PO Box #####",
    "{number} {street}|{postcode}|{city}|{country}",
)
_IN = _locale(
    "en-IN",
    "India",
    "+91",
    "Aarav, Priya, Vivaan, Ananya, Aditya, Diya, Arjun, Saanvi, Rohan, Kavya, Rahul, Sneha, Vikram, Lakshmi",
    "Sharma, Verma, Gupta, Singh, Kumar, Patel, Reddy, Iyer, Nair, Mehta, Chopra, Joshi, Banerjee, Rao",
    "MG Road, Nehru Place, Connaught Place, Linking Road, Park Street, Anna Salai",
    "New Delhi = 1100##; Mumbai = 4000##; Bengaluru = 5600##; Chennai = 6000##; Kolkata = 7000##",
    "{number} {street}|{city} {postcode}|{country}",
)
_SG = _locale(
    "en-SG",
    "Singapore",
    "+65",
    "Wei Ling, Jun Jie, Hui Min, Zhi Hao, Siti, Muhammad, Priya, Darren, Rachel, Kumar, Mei Xin, Ethan",
    "Tan, Lim, Lee, Ng, Ong, Wong, Goh, Chua, Chan, Koh, Teo, Rahman, Pillai",
    "Orchard Road, Tampines Avenue, Ang Mo Kio Avenue, Bukit Timah Road, Jurong West Street",
    "Singapore = ######",
    "{number} {street}|{city} {postcode}|{country}",
)
_JP = _locale(
    "ja-JP",
    "日本",
    "+81",
    "陽翔, 結菜, 蓮, 葵, 湊, 陽葵, 大翔, 凛, 悠真, 芽依, 健一, 由美子, 誠, 恵子",
    "佐藤, 鈴木, 高橋, 田中, 伊藤, 渡辺, 山本, 中村, 小林, 加藤, 吉田, 山田",
    "千代田1丁目, 西新宿2丁目, 銀座4丁目, 梅田3丁目, 栄5丁目",
    "東京都 = 〒1##-####; 大阪府 = 〒5##-####; 愛知県 = 〒4##-####; 神奈川県 = 〒2##-####",
    "{postcode}|{city}{street}{number}|{country}",
    (
        "haruto, yuna, ren, aoi, minato, himari, hiroto, rin, yuma, mei, kenichi, yumiko, makoto, keiko",
        "sato, suzuki, takahashi, tanaka, ito, watanabe, yamamoto, nakamura, kobayashi, kato, yoshida, yamada",
    ),
)
_US_NAMES = (
    "James, Mary, Michael, Jennifer, David, Linda, Chris, Jessica, Tyler, Ashley, Brandon, Emily, DeShawn, Keisha",
    "Smith, Johnson, Williams, Brown, Jones, Miller, Davis, Wilson, Anderson, Taylor, Thomas, Moore, Jackson",
)
_US_SPANISH_NAMES = (
    "José, María, Luis, Guadalupe, Carlos, Rosa, Juan, Ana, Miguel, Daniela, Jesús, Alejandra",
    "Hernández, García, Martínez, López, González, Rodríguez, Pérez, Sánchez, Ramírez, Torres, Flores",
)
_US_STREETS = "Main St, Oak Ave, Maple Dr, Washington Blvd, Elm St, Cedar Ln, Lakeview Rd, 2nd St"
_US_CITIES = {
    "America/New_York": "New York, NY = 100##; Boston, MA = 021##; Philadelphia, PA = 191##; Atlanta, GA = 303##",
    "America/Chicago": "Chicago, IL = 606##; Houston, TX = 770##; Dallas, TX = 752##; Minneapolis, MN = 554##",
    "America/Denver": "Denver, CO = 802##; Salt Lake City, UT = 841##; Albuquerque, NM = 871##",
    "America/Phoenix": "Phoenix, AZ = 850##; Tucson, AZ = 857##; Mesa, AZ = 852##",
    "America/Los_Angeles": "Los Angeles, CA = 900##; San Francisco, CA = 941##; Seattle, WA = 981##",
}


def _americans(cities: str) -> Weights[_Locale]:
    """Drivers and passengers in the US, with the cities of their zone; some speak Spanish at home."""
    english, spanish = (
        _locale(language, "USA", "+1", *names, _US_STREETS, cities, "{number} {street}|{city} {postcode}|{country}")
        for language, names in (("en-US", _US_NAMES), ("es-US", _US_SPANISH_NAMES))
    )
    return Weights((english, spanish), (85, 15))


_BR = _locale(
    "pt-BR",
    "Brasil",
    "+55",
    "Miguel, Helena, Arthur, Alice, Heitor, Laura, Bernardo, Valentina, Davi, Júlia, Gabriel, Luíza",
    "Silva, Santos, Oliveira, Souza, Rodrigues, Ferreira, Alves, Pereira, Lima, Gomes, Araújo, Conceição",
    "Avenida Paulista, Rua Augusta, Rua Oscar Freire, Avenida Brasil, Rua da Consolação",
    "São Paulo - SP = 01###-###; Campinas - SP = 130##-###; Santos - SP = 110##-###",
    "{street} {number}|{city}|{postcode}|{country}",
)

# The locales of each zone a business uses, by IANA name, with their weights.
_BY_ZONE: dict[str, Weights[_Locale]] = {
    "Europe/Berlin": Weights((_DE,), (1,)),
    "Europe/Vienna": Weights((_AT,), (1,)),
    "Europe/Paris": Weights((_FR,), (1,)),
    "Europe/Madrid": Weights((_ES,), (1,)),
    "Europe/Rome": Weights((_IT,), (1,)),
    "Europe/Amsterdam": Weights((_NL,), (1,)),
    "Europe/Warsaw": Weights((_PL,), (1,)),
    "Europe/London": Weights((_GB,), (1,)),
    "Europe/Dublin": Weights((_IE,), (1,)),
    "Europe/Lisbon": Weights((_PT,), (1,)),
    "Europe/Athens": Weights((_GR,), (1,)),
    "Europe/Helsinki": Weights((_FI,), (1,)),
    "Europe/Istanbul": Weights((_TR,), (1,)),
    "Asia/Dubai": Weights((_AE,), (1,)),
    "Asia/Kolkata": Weights((_IN,), (1,)),
    "Asia/Singapore": Weights((_SG,), (1,)),
    "Asia/Tokyo": Weights((_JP,), (1,)),
    "America/Sao_Paulo": Weights((_BR,), (1,)),
    **{zone: _americans(cities) for zone, cities in _US_CITIES.items()},
}


def _locale_of(zone: Zone) -> Weights[_Locale]:
    return _BY_ZONE[zone.name]


class Profiles:
    """Makes each customer's profile event and, for a few, a later change of one detail."""

    __slots__ = ("_engine", "_rng", "_source", "_zones")

    def __init__(self, engine: Engine, rng: random.Random, source: str, zones: tuple[Zone, ...]) -> None:
        self._engine = engine
        self._rng = rng
        self._source = source
        self._zones = zones

    def add(self, customer: Customer) -> None:
        """Schedule the customer's profile at the start and, for a few, a change later in the window."""
        engine = self._engine
        engine.at(engine.start, self._profile, customer)
        if self._rng.random() < _UPDATED:
            engine.at(engine.uniform(engine.start + 1, engine.end), self._update, customer)

    def _profile(self, now: int, customer: Customer) -> Envelope:
        rng = self._rng
        zone = self._zones[customer.zone]
        locale = _locale_of(zone).pick(rng.random())
        f = int(rng.random() * len(locale.first_names))
        g = int(rng.random() * len(locale.last_names))
        first, last = locale.first_names[f], locale.last_names[g]
        name = f"{last} {first}" if locale.language == "ja-JP" else f"{first} {last}"
        data: Envelope = {"name": name}
        no_email = rng.random() < _NO_EMAIL
        if not no_email:
            data["email"] = self._email(locale, f, g)
        data["phone"] = self._phone(locale)
        if not (no_email and rng.random() < _NO_ADDRESS):
            data["address"] = self._address(locale)
        data["language"] = locale.language
        data["timezone"] = zone.name
        channel = _CHANNELS.pick(rng.random())
        if channel is not None:
            data["channel"] = channel
        return self._engine.emit(now, customer.zone, "customer.profile", self._source, customer, data)

    def _update(self, now: int, customer: Customer) -> Envelope:
        rng = self._rng
        locale = _locale_of(self._zones[customer.zone]).pick(rng.random())
        what = rng.random()
        if what < 0.4:
            f = int(rng.random() * len(locale.first_names))
            g = int(rng.random() * len(locale.last_names))
            data: Envelope = {"email": self._email(locale, f, g)}
        elif what < 0.7:
            data = {"phone": self._phone(locale)}
        else:
            data = {"address": self._address(locale)}
        return self._engine.emit(now, customer.zone, "customer.updated", self._source, customer, data)

    def _email(self, locale: _Locale, f: int, g: int) -> str:
        rng = self._rng
        first = (locale.latin_first or locale.first_names)[f]
        last = (locale.latin_last or locale.last_names)[g]
        local = ".".join(filter(None, (_ascii(first), _ascii(last)))) or "customer"
        if rng.random() < 0.5:
            local += str(int(rng.random() * 100))
        return f"{local}@{_DOMAINS[int(rng.random() * len(_DOMAINS))]}"

    def _phone(self, locale: _Locale) -> str:
        length = 10 if locale.calling_code == "+1" else 9  # the North American plan has ten digits
        digits = f"{int(self._rng.random() * 10**length):0{length}d}"
        return f"{locale.calling_code} {digits[:3]} {digits[3:6]} {digits[6:]}"

    def _address(self, locale: _Locale) -> list[str]:
        rng = self._rng
        city, pattern = locale.cities[int(rng.random() * len(locale.cities))]
        return locale.layout.format(
            street=locale.streets[int(rng.random() * len(locale.streets))],
            number=1 + int(rng.expovariate(1 / 30)),
            postcode="".join([_fill(c, rng) for c in pattern]),
            city=city,
            CITY=city.upper(),
            country=locale.country,
        ).split("|")


def _fill(pattern: str, rng: random.Random) -> str:
    if pattern == "#":
        return str(int(rng.random() * 10))
    if pattern == "@":
        return "ABCDEFGHJKLMNPRSTUVWXY"[int(rng.random() * 22)]
    return pattern


@cache
def _ascii(name: str) -> str:
    """A name in Latin letters as (part of) the local part of an email: a-z only (Łukasz: lukasz)."""
    folded = unicodedata.normalize("NFKD", name.replace("ł", "l").replace("Ł", "L").replace("ß", "ss"))
    return "".join(c for c in folded.lower() if "a" <= c <= "z")
