"""FHIR R4 (4.0.1) Bundles: Observations, MedicationAdministrations and Patients as source rows.

``read_fhir`` reads one Bundle or several: a path to a JSON file, a parsed ``dict``, or a list
of those. Every Bundle, and every Observation, MedicationAdministration, Patient and Medication
in it, is validated with the **R4B** (4.3.0) models of ``fhir.resources`` before anything is
read: fhir.resources 7 and later ship FHIR R5 at top level and R4B and STU3 as sub-packages,
not R4 itself, and R4B is wire-compatible with R4 for these resources. fhir.resources checks
structure and primitive formats, not code bindings, so statuses and the Bundle type are
checked here against R4's value sets. Values are then read from the JSON as written.

What is read:

- Observation: the ``code.coding`` of system ``http://loinc.org`` (matched against the
  dictionary; a covariate row when declared as one, such as body weight 29463-7);
  ``valueQuantity.value`` with its UCUM ``code`` (``system`` ``http://unitsofmeasure.org``);
  each ``component`` (a blood pressure panel) as its own row with the Observation's subject
  and time (a panel without value of its own is not a row; nor is one of ``hasMember``);
  the time from ``effectiveDateTime``, ``effectiveInstant`` or ``effectivePeriod.start``.
- The subject of both: ``subject.reference``, ``Patient/<id>`` or the ``urn:uuid:`` fullUrl
  of a Patient entry; the raw identifier is the Patient's logical id (its fullUrl when it has
  none), pseudonymised by ``ingest``.
- MedicationAdministration: the drug from ``medicationCodeableConcept`` (or the ``code`` of the
  Medication a ``medicationReference`` names, contained or a Bundle entry), each coding's code
  (RxNorm, NDC...) tried, then the text; the amount from ``dosage.dose`` (a UCUM Quantity);
  the route from ``dosage.route`` (SNOMED CT 26643006 oral, 47625008 intravenous; none: the
  dictionary's); the time from ``effectiveDateTime`` or ``effectivePeriod.start``; an
  intravenous dose given over an ``effectivePeriod`` is an infusion lasting to its ``end``.
- Patient: ``birthDate`` (behind ``age``) and ``gender`` (``sex``), each only when the
  dictionary declares that covariate.

Names, identifiers, telecom, addresses, narrative text and ``Reference.display`` are never
read. Messages name a resource by its position, ``"Bundle entry 3 (Observation)"`` (entries
count from 1; ``"Bundle 2 entry 3"`` when several Bundles are read), and an element by its
path (``component[0].valueQuantity``, indices from 0 as in FHIRPath): never by a resource id,
fullUrl, reference or value. A code is named only when it has its vocabulary's form (LOINC
``nnnn-n``, RxNorm and SNOMED CT digits, NDC); other text is described by its length. Rows are
handed to ``ingest`` in time order per subject (a Bundle's entry order carries no meaning), so
its out-of-order repair does not apply.

Beyond the shared checks of ``vht.data.ingest``:

| problem | outcome |
|---|---|
| not JSON, not a Bundle; a history or ``*-response`` Bundle | ``SchemaError`` |
| a resource failing R4B validation; a resource type R4 does not define | ``SchemaError`` (1) |
| a status or Bundle type outside R4's value set | ``SchemaError`` |
| no subject; a subject not a Patient, contained, or an unresolved ``urn:`` | ``SchemaError`` |
| ``Patient/<id>`` in none of the Bundles (dictionary with ``age`` or ``sex``) | read, warning |
| an Observation (or component) code without LOINC coding | ``CodeError`` |
| LOINC codings naming two declared variables | ``CodeError`` |
| a LOINC code or drug that the dictionary does not declare | not read, a warning per code |
| a ``valueQuantity`` or ``dosage.dose`` with a non-UCUM system or no code | ``UnitError`` |
| a value with a ``comparator`` (``<0.1``: a bound, not a measurement) | ``ValueDataError`` |
| ``valueString``, ``valueInteger`` | the value as given (``ingest`` checks it) |
| any other ``value[x]`` (CodeableConcept, boolean, Range...) | ``ValueDataError`` |
| no value (``dataAbsentReason``) | an empty value: ``ingest`` drops it, warning |
| Observation status ``entered-in-error`` or ``cancelled`` | not read, warning |
| MedicationAdministration status ``not-done`` or ``entered-in-error`` | not read, warning |
| no ``dosage.dose``, or a dose without value | ``ValueDataError`` |
| a ``medicationReference`` that resolves to no Medication | ``SchemaError`` |
| ``effectivePeriod.end`` before its start | ``ValueDataError`` |
| an oral dose's ``effectivePeriod`` | read at its start (an oral dose does not last) |
| a time known to the year or month only (FHIR allows ``2021``, ``2021-03``) | ``TimeError`` |
| a partial ``birthDate`` (year, or year and month) | mid-year or mid-month, warning |
| resources of other R4 types (Practitioner, Encounter...; not validated) | not read, warning |
| an entry without resource (a transaction's DELETE) | not read, warning |

(1) naming the entry, the element path and pydantic's error type only: pydantic's messages
quote the input, which may be a patient's name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ._dictionary import DataDictionary
from ._errors import CodeError, SchemaError, TimeError, UnitError, ValueDataError
from ._ingest import BIRTH_DATE, SOURCE_COLUMNS, PatientData, Repairs, ingest
from ._privacy import Pseudonymizer

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED_CT = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
ORAL_ROUTE = "26643006"
INTRAVENOUS_ROUTE = "47625008"

READ_TYPES = ("Observation", "MedicationAdministration", "Patient")
# R4 value sets (fhir.resources checks structure and primitive formats, not code bindings)
BUNDLE_TYPES = ("document", "message", "transaction", "transaction-response", "batch",
                "batch-response", "history", "searchset", "collection")
UNREAD_BUNDLE_TYPES = ("history", "transaction-response", "batch-response")
OBSERVATION_STATUSES = ("registered", "preliminary", "final", "amended", "corrected",
                        "cancelled", "entered-in-error", "unknown")
OBSERVATION_NOT_READ = ("entered-in-error", "cancelled")
ADMINISTRATION_STATUSES = ("in-progress", "not-done", "on-hold", "completed",
                           "entered-in-error", "stopped", "unknown")
ADMINISTRATION_NOT_READ = ("not-done", "entered-in-error")
COMPARATORS = ("<", "<=", ">=", ">")
# R4 resource types that R4B dropped (fhir.resources has no model for them): not read
R4_ONLY_TYPES = ("EffectEvidenceSynthesis", "MedicinalProduct", "MedicinalProductAuthorization",
                 "MedicinalProductContraindication", "MedicinalProductIndication",
                 "MedicinalProductIngredient", "MedicinalProductInteraction",
                 "MedicinalProductManufactured", "MedicinalProductPackaged",
                 "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect",
                 "RiskEvidenceSynthesis", "SubstanceSpecification")

# the forms of the vocabularies whose codes a message may name
_CODE_FORMS = {LOINC: re.compile(r"^\d{1,8}-\d$"), RXNORM: re.compile(r"^\d{1,10}$"),
               SNOMED_CT: re.compile(r"^\d{6,18}$"),
               NDC: re.compile(r"^\d{4,5}-\d{3,4}-\d{1,2}$")}
_VOCABULARY_NAMES = {LOINC: "LOINC", RXNORM: "RxNorm", SNOMED_CT: "SNOMED CT", NDC: "NDC"}
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ELEMENT = re.compile(r"^_?[a-z][A-Za-z0-9]{0,63}$")
_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})"
                        r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
                        r"(Z|[+-]\d{2}:?\d{2})?)?$")
_INTRAVENOUS = ("iv", "intravenous", "infusion", "iv infusion", INTRAVENOUS_ROUTE)


def _model(resource_type: str):
    """The fhir.resources R4B model of a resource type, or None when R4B has none."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (ValueError, KeyError, AttributeError):
        return None


def _known(resource_type) -> bool:
    """Whether a resource type is one of FHIR R4's (R4B's, or one R4B dropped)."""
    return isinstance(resource_type, str) and bool(_RESOURCE_TYPE.match(resource_type)) and (
        resource_type in R4_ONLY_TYPES or _model(resource_type) is not None)


def _a(resource_type) -> str:
    """A resource type for a message: named when FHIR R4 defines it; anything else is data."""
    if not _known(resource_type):
        return "a resource of a type FHIR R4 does not define"
    return f"{'an' if resource_type[0] in 'AEIOU' else 'a'} {resource_type}"


def _path(loc: Sequence) -> str:
    """A pydantic error location as a FHIRPath-like element path (keys that are not element
    names, such as a misspelt key that could be anything, are not shown)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _ELEMENT.match(part):
            out += f".{part}" if out else part
        else:
            out += ".<element>" if out else "<element>"
    return out or "the resource"


def _validation_problems(model, resource: Mapping) -> str | None:
    """None when the resource validates; else its errors as element paths and error types
    (never pydantic's messages, which quote the input)."""
    from pydantic import ValidationError

    try:
        model.model_validate(resource)
    except ValidationError as error:
        details = error.errors(include_url=False, include_context=False, include_input=False)
        parts = [f"{_path(d['loc'])} ({d['type']})" for d in details[:5]]
        more = f" and {len(details) - 5} more" if len(details) > 5 else ""
        return ", ".join(parts) + more
    except Exception:  # fhir.resources raises KeyError on a contained resource of unknown type
        return "a nested or contained resource of a type FHIR R4 does not define"
    return None


def _code_note(system, code) -> str:
    """How a message may name a code: by vocabulary and code when the code has its
    vocabulary's form, else by its length."""
    vocabulary = _VOCABULARY_NAMES.get(system, "a coding")
    form = _CODE_FORMS.get(system)
    if isinstance(code, str) and form is not None and form.match(code):
        return f"{vocabulary} {code}"
    return f"{vocabulary} code of {len(str(code))} characters"


def _utc(text: str, position: str, element: str) -> pd.Timestamp:
    if not isinstance(text, str) or not _DATE_TIME.match(text.strip()):
        raise TimeError(f"{position}: {element} is not an ISO 8601 date or date-time with a day")
    stamp = pd.Timestamp(text.strip())
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@dataclasses.dataclass
class _Bundle:
    label: str
    # (position, resource type, resource, subject): the subject of a Patient is its logical id,
    # else its fullUrl
    entries: list[tuple[str, str, dict, str | None]] = dataclasses.field(default_factory=list)
    full_urls: dict[str, tuple[str, str | None]] = dataclasses.field(default_factory=dict)
    medications: dict[str, dict] = dataclasses.field(default_factory=dict)
    # "Patient/<id>" -> subject, from each Patient's id and its fullUrl's last two segments
    patients: dict[str, str] = dataclasses.field(default_factory=dict)


def _load(item, label: str) -> dict:
    if isinstance(item, Mapping):
        return dict(item)
    if not isinstance(item, (str, Path)):
        raise TypeError(f"{label}: a FHIR Bundle is given as a path or a dict, not "
                        f"{type(item).__name__}")
    # messages do not name the file: its name could be a patient's
    try:
        text = Path(item).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise SchemaError(f"{label}: the file is not UTF-8 text")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = (error.lineno, error.colno)
    raise SchemaError(f"{label}: the file is not valid JSON (line {where[0]}, column "
                      f"{where[1]})")


def _parse_bundle(item, label: str, repairs: Repairs) -> _Bundle:
    bundle = _load(item, label)
    if not isinstance(bundle, dict):
        raise SchemaError(f"{label}: the JSON is not an object; a FHIR Bundle is expected")
    resource_type = bundle.get("resourceType")
    if resource_type != "Bundle":
        what = "has no resourceType" if resource_type is None else f"is {_a(resource_type)}"
        raise SchemaError(f"{label}: the top-level resource {what}, not a Bundle")
    entries = bundle.get("entry")
    shell = dict(bundle)
    if isinstance(entries, list):
        shell["entry"] = [{k: v for k, v in e.items() if k != "resource"}
                          if isinstance(e, dict) else e for e in entries]
    from fhir.resources.R4B.bundle import Bundle

    problems = _validation_problems(Bundle, shell)
    if problems:
        raise SchemaError(f"{label}: the Bundle fails FHIR R4 (R4B) validation at {problems}")
    kind = bundle.get("type")
    if kind not in BUNDLE_TYPES:
        raise SchemaError(f"{label}: the Bundle type is not one of FHIR R4's {BUNDLE_TYPES}")
    if kind in UNREAD_BUNDLE_TYPES:
        raise SchemaError(f"{label}: a {kind} Bundle holds versions or responses, not the "
                          "current records; read a collection, searchset, transaction or "
                          "batch Bundle")
    out = _Bundle(label)
    unread: Counter = Counter()
    for number, entry in enumerate(entries or [], start=1):
        position = f"{label} entry {number}"
        resource = entry.get("resource")
        if resource is None:
            repairs.add("no-resource", position, "", "the entry has no resource; nothing read")
            continue
        if not isinstance(resource, dict):
            raise SchemaError(f"{position}: the resource is not a JSON object")
        resource_type = resource.get("resourceType")
        if resource_type is None:
            raise SchemaError(f"{position}: the resource has no resourceType")
        if not _known(resource_type):
            raise SchemaError(f"{position}: the resource is {_a(resource_type)}")
        if resource_type in (*READ_TYPES, "Medication"):
            problems = _validation_problems(_model(resource_type), resource)
            if problems:
                raise SchemaError(f"{position} ({resource_type}): fails FHIR R4 (R4B) "
                                  f"validation at {problems}")
        else:
            unread[resource_type] += 1
        full_url = entry.get("fullUrl")
        subject = (resource.get("id") or full_url) if resource_type == "Patient" else None
        if full_url:
            if full_url in out.full_urls:
                raise SchemaError(f"{position}: its fullUrl is that of an earlier entry")
            out.full_urls[full_url] = (resource_type, subject)
        if resource_type == "Patient":
            tail = _REFERENCE.search(full_url or "")
            for key in (resource.get("id") and f"Patient/{resource['id']}",
                        tail and tail[1] == "Patient" and f"Patient/{tail[2]}"):
                if key and subject:
                    out.patients.setdefault(key, subject)
        if resource_type == "Medication":
            for key in (full_url, resource.get("id") and f"Medication/{resource['id']}"):
                if key:
                    out.medications[key] = resource
        elif resource_type in READ_TYPES:
            out.entries.append((f"{position} ({resource_type})", resource_type, resource,
                                subject))
    for name, count in sorted(unread.items()):
        repairs.add("unread-resource", label, "",
                    f"{count} {name} resource(s) not read (vht reads {', '.join(READ_TYPES)})")
    return out


class _Reader:
    def __init__(self, dictionary: DataDictionary, pseudonyms: Pseudonymizer, repairs: Repairs,
                 patients: set[str]):
        self.dictionary = dictionary
        self.pseudonyms = pseudonyms
        self.repairs = repairs
        self.patients = patients
        self.rows: list[dict] = []
        self.undeclared: Counter = Counter()
        self.absent_patients: set[str] = set()
        self.read_patients: dict[str, tuple] = {}
        self.wants = {n for n in ("age", "sex") if n in dictionary.covariates}

    # -- subjects ------------------------------------------------------------------------

    def subject(self, resource, bundle: _Bundle, position: str) -> str:
        subject = resource.get("subject")
        if not subject:
            raise SchemaError(f"{position}: no subject; vht reads the records of Patients")
        reference = subject.get("reference")
        if not reference:
            raise SchemaError(f"{position}: the subject has no reference (an identifier or a "
                              "display alone does not say which Patient)")
        if reference.startswith("#"):
            raise SchemaError(f"{position}: the subject is a contained resource, which has no "
                              "logical id to follow across records")
        if reference in bundle.full_urls:
            kind, patient = bundle.full_urls[reference]
            if kind != "Patient":
                raise SchemaError(f"{position}: the subject is {_a(kind)}, "
                                  "not a Patient")
            return patient
        if reference.startswith("urn:"):
            raise SchemaError(f"{position}: the subject reference (a urn) is the fullUrl of no "
                              "entry in the Bundle")
        match = _REFERENCE.search(reference)
        if not match:
            raise SchemaError(f"{position}: the subject reference is neither Patient/<id> nor "
                              "the fullUrl of an entry in the Bundle")
        if match[1] != "Patient":
            raise SchemaError(f"{position}: the subject is {_a(match[1])}, "
                              "not a Patient")
        patient = bundle.patients.get(f"Patient/{match[2]}", match[2])
        if patient not in self.patients and self.wants and patient not in self.absent_patients:
            self.absent_patients.add(patient)
            self.repairs.add("no-patient", position, self.pseudonyms(patient),
                             "the subject's Patient is in none of the Bundles; its records are "
                             f"read without {' or '.join(sorted(self.wants))}")
        return patient

    def status(self, resource, statuses, not_read, position, subject) -> bool:
        status = resource.get("status")
        if status not in statuses:
            raise SchemaError(f"{position}: the status is not one of FHIR R4's {statuses}")
        if status in not_read:
            self.repairs.add("status", position, self.pseudonyms(subject),
                             f"status {status}; not read")
            return False
        return True

    # -- resources -----------------------------------------------------------------------

    def observation(self, resource, bundle, position) -> None:
        subject = self.subject(resource, bundle, position)
        if not self.status(resource, OBSERVATION_STATUSES, OBSERVATION_NOT_READ, position,
                           subject):
            return
        time = _effective(resource, ("effectiveDateTime", "effectiveInstant"))
        components = resource.get("component") or []
        parts = []
        valued = _has_value(resource) or "dataAbsentReason" in resource
        # a panel's own code carries no value: its components (or hasMember entries) do
        if valued or not (components or resource.get("hasMember")):
            parts.append((position, resource))
        parts += [(f"{position} component {i}", c) for i, c in enumerate(components, start=1)]
        for part, element in parts:
            where = f"{part} (subject {self.pseudonyms(subject)})"
            declared = self.loinc(element.get("code"), where, bundle.label)
            if declared is None:
                continue
            kind, code = declared
            value, unit = _value(element, where)
            self.rows.append({"position": part, "subject": subject, "kind": kind,
                              "code": code, "time": time, "value": value, "unit": unit,
                              "route": "", "duration": 0.0})

    def loinc(self, concept, where, label) -> tuple[str, str] | None:
        codings = (concept or {}).get("coding") or []
        codes = [c.get("code") for c in codings if c.get("system") == LOINC and c.get("code")]
        if not codes:
            raise CodeError(f"{where}: the code has no LOINC coding (system {LOINC}); vht "
                            "matches Observations by LOINC code")
        found: dict[tuple[str, str], str] = {}
        for code in codes:
            for kind in ("observation", "covariate"):
                if self.dictionary.knows(kind, code):
                    found.setdefault((kind, self.dictionary.lookup(kind, code)), code)
        if len(found) > 1:
            names = sorted(name for _, name in found)
            raise CodeError(f"{where}: its LOINC codings name {len(found)} declared variables "
                            f"{names}; an Observation has one")
        if not found:
            self.undeclared[(label, "Observation value(s)", _code_note(LOINC, codes[0]))] += 1
            return None
        (kind, _), code = next(iter(found.items()))
        return kind, code

    def administration(self, resource, bundle, position) -> None:
        subject = self.subject(resource, bundle, position)
        if not self.status(resource, ADMINISTRATION_STATUSES, ADMINISTRATION_NOT_READ,
                           position, subject):
            return
        where = f"{position} (subject {self.pseudonyms(subject)})"
        code = self.drug(_medication(resource, bundle, where), where, bundle.label)
        if code is None:
            return
        dosage = resource.get("dosage") or {}
        dose = dosage.get("dose")
        if not dose:
            raise ValueDataError(f"{where}: no dosage.dose; a dose needs its amount")
        if dose.get("value") is None:
            raise ValueDataError(f"{where}: dosage.dose has no value; a dose needs its amount")
        amount, unit = _quantity(dose, where, "dosage.dose")
        route = _route(dosage.get("route"), where)
        default = self.dictionary.doses[self.dictionary.lookup("dose", code)].route
        intravenous = route.strip().lower() in _INTRAVENOUS or (
            not route and default in ("iv", "infusion"))
        time, duration = _administered(resource, where, intravenous)
        self.rows.append({"position": position, "subject": subject, "kind": "dose",
                          "code": code, "time": time, "value": amount, "unit": unit,
                          "route": route, "duration": duration})

    def drug(self, concept, position, label) -> str | None:
        codings = [c for c in (concept.get("coding") or []) if c.get("code")]
        candidates = [c["code"] for c in codings]
        if concept.get("text"):
            candidates.append(concept["text"])
        if not candidates:
            raise CodeError(f"{position}: the medication has neither a coding nor a text")
        for candidate in candidates:
            if self.dictionary.knows("dose", candidate):
                return candidate
        note = (_code_note(codings[0].get("system"), codings[0]["code"]) if codings
                else f"a medication given as text of {len(concept['text'])} characters")
        self.undeclared[(label, "MedicationAdministration(s)", note)] += 1
        return None

    def patient(self, resource, position, subject) -> None:
        if not subject:
            self.repairs.add("no-patient-id", position, "", "the Patient has neither an id nor "
                             "a fullUrl, so no record can refer to it; not read")
            return
        previous = self.read_patients.get(subject)
        facts = (resource.get("birthDate"), resource.get("gender"))
        if previous is not None:
            if previous != facts:
                self.repairs.add("varying-patient", position, self.pseudonyms(subject),
                                 "the Patient is given again with another birth date or "
                                 "gender; the first is kept")
            return
        self.read_patients[subject] = facts
        if "sex" in self.wants and resource.get("gender"):
            self.rows.append({"position": position, "subject": subject, "kind": "covariate",
                              "code": "sex", "time": None, "value": resource["gender"],
                              "unit": "", "route": "", "duration": 0.0})
        if "age" in self.wants and resource.get("birthDate"):
            born = self.birth_date(resource["birthDate"], position, subject)
            self.rows.append({"position": position, "subject": subject, "kind": "covariate",
                              "code": BIRTH_DATE, "time": None, "value": born, "unit": "",
                              "route": "", "duration": 0.0})

    def birth_date(self, text: str, position, subject) -> str:
        # R4B has checked the form: YYYY, YYYY-MM or YYYY-MM-DD
        parts = text.split("-")
        if len(parts) == 3:
            return text
        assumed = ("year only; 1 July (mid-year) is assumed" if len(parts) == 1
                   else "month only; the 15th (mid-month) is assumed")
        self.repairs.add("partial-birth-date", position, self.pseudonyms(subject),
                         f"the birth date is known to the {assumed}")
        return f"{parts[0]}-07-01" if len(parts) == 1 else f"{parts[0]}-{parts[1]}-15"

    def report(self) -> None:
        for (label, what, note), count in sorted(self.undeclared.items()):
            self.repairs.add("undeclared-code", label, "",
                             f"{count} {what} of {note} are not declared in the data "
                             "dictionary; not read")


def _has_value(element) -> bool:
    return any(key.startswith("value") for key in element)


def _value(element, where) -> tuple:
    keys = [key for key in element if key.startswith("value")]
    if not keys:
        return "", ""  # dataAbsentReason, or no value at all: ingest drops it with a warning
    key = keys[0]
    if key == "valueQuantity":
        quantity = element[key]
        if quantity.get("value") is None:
            return "", ""
        return _quantity(quantity, where, "valueQuantity")
    if key in ("valueString", "valueInteger"):
        return element[key], ""
    kind = key[len("value"):]
    raise ValueDataError(f"{where}: the value is {'an' if kind[0] in 'AEIOU' else 'a'} {kind}, "
                         "not a Quantity with a UCUM unit")


def _quantity(quantity, where, element) -> tuple:
    comparator = quantity.get("comparator")
    if comparator:
        shown = repr(comparator) if comparator in COMPARATORS else "a comparator"
        raise ValueDataError(f"{where}: {element} has {shown}: a bound (a detection limit), "
                             "not a measurement")
    system, code = quantity.get("system"), quantity.get("code")
    if system != UCUM:
        which = "no system" if system is None else f"a system other than UCUM ({UCUM})"
        raise UnitError(f"{where}: {element} has {which}; vht reads UCUM units only")
    if not code:
        raise UnitError(f"{where}: {element} has no UCUM code (its unit display text is not "
                        "read)")
    return quantity["value"], code


def _effective(resource, keys) -> str | None:
    for key in keys:
        if resource.get(key):
            return resource[key]
    period = resource.get("effectivePeriod") or {}
    return period.get("start")  # none: ingest raises TimeError (no time)


def _administered(resource, position, intravenous) -> tuple[str | None, float]:
    """The dose's time and, for an intravenous dose given over a period, its duration in
    hours."""
    if resource.get("effectiveDateTime"):
        return resource["effectiveDateTime"], 0.0
    period = resource.get("effectivePeriod") or {}
    start, end = period.get("start"), period.get("end")
    if not start or not end:
        return start, 0.0
    began = _utc(start, position, "effectivePeriod.start")
    ended = _utc(end, position, "effectivePeriod.end")
    to_the_day = len(start.strip()) <= 10 or len(end.strip()) <= 10
    if to_the_day:
        if ended.normalize() < began.normalize():
            raise ValueDataError(f"{position}: effectivePeriod ends on a day before it starts")
        return start, 0.0
    hours = (ended - began).total_seconds() / 3600.0
    if hours < 0:
        raise ValueDataError(f"{position}: effectivePeriod ends {-hours:g} h before it starts")
    # an oral dose's period is when it was taken, not how long it lasts
    return start, hours if intravenous else 0.0


def _route(concept, position) -> str:
    if not concept:
        return ""
    codings = concept.get("coding") or []
    snomed = [c.get("code") for c in codings if c.get("system") == SNOMED_CT and c.get("code")]
    for code in snomed:
        if code in (ORAL_ROUTE, INTRAVENOUS_ROUTE):
            return code
    if snomed:
        return snomed[0]  # ingest refuses it (CodeError), describing it by its length
    if concept.get("text"):
        return concept["text"]
    if codings:
        raise CodeError(f"{position}: dosage.route has no SNOMED CT coding ({ORAL_ROUTE} oral, "
                        f"{INTRAVENOUS_ROUTE} intravenous)")
    return ""


def _medication(resource, bundle: _Bundle, position) -> dict:
    """The medication's CodeableConcept: its own, or the code of the Medication it refers to
    (contained, or an entry of the Bundle)."""
    if "medicationCodeableConcept" in resource:
        return resource["medicationCodeableConcept"]
    reference = (resource.get("medicationReference") or {}).get("reference") or ""
    if reference.startswith("#"):
        medication = next((c for c in resource.get("contained") or []
                           if isinstance(c, dict) and c.get("resourceType") == "Medication"
                           and c.get("id") == reference[1:]), None)
    else:
        medication = bundle.medications.get(reference)
        if medication is None and (match := _REFERENCE.search(reference)):
            medication = bundle.medications.get(f"{match[1]}/{match[2]}")
    if medication is None:
        raise SchemaError(f"{position}: the medicationReference resolves to no contained "
                          "Medication and no Medication entry of the Bundle")
    if not medication.get("code"):
        raise CodeError(f"{position}: the Medication it refers to has no code")
    return medication["code"]


def _sort_key(row: dict) -> float:
    time = row["time"]
    if isinstance(time, str) and _DATE_TIME.match(time.strip()):
        stamp = pd.Timestamp(time.strip())
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.value / 1e9
    return math.inf  # no time, or one ingest refuses: it names the row


def read_fhir(bundles, dictionary: DataDictionary, pseudonyms: Pseudonymizer, *,
              reference: str = "first_record") -> PatientData:
    """Ingest FHIR R4 Bundles: a path to a JSON file holding a Bundle, a parsed Bundle
    (``dict``), or a list of those. See the module docstring for what is read and what is
    refused."""
    items = list(bundles) if isinstance(bundles, (list, tuple)) else [bundles]
    if not items:
        raise SchemaError("no FHIR Bundle is given")
    repairs = Repairs()
    parsed = [_parse_bundle(item, "Bundle" if len(items) == 1 else f"Bundle {number}",
                            repairs) for number, item in enumerate(items, start=1)]
    patients = {subject for bundle in parsed for _, kind, _, subject in bundle.entries
                if kind == "Patient" and subject}
    reader = _Reader(dictionary, pseudonyms, repairs, patients)
    for bundle in parsed:
        for position, resource_type, resource, subject in bundle.entries:
            if resource_type == "Observation":
                reader.observation(resource, bundle, position)
            elif resource_type == "MedicationAdministration":
                reader.administration(resource, bundle, position)
            else:
                reader.patient(resource, position, subject)
    reader.report()
    rows = reader.rows
    if not rows:
        raise SchemaError("FHIR: no Observation, MedicationAdministration or Patient that the "
                          "data dictionary declares")
    order = {}
    for row in rows:
        order.setdefault(row["subject"], len(order))
        time = row["time"]
        # FHIR allows "2021" and "2021-03"; ingest would read a bare year as a number of hours
        if isinstance(time, str) and not _DATE_TIME.match(time.strip()):
            raise TimeError(f"{row['position']} (subject {pseudonyms(row['subject'])}): the "
                            f"time is known to the {'year' if len(time.strip()) <= 4 else 'month'}"
                            " only; vht needs the day at least")
    keyed = sorted(enumerate(rows), key=lambda item: (
        order[item[1]["subject"]], item[1]["kind"] == "covariate", _sort_key(item[1]),
        item[0]))
    frame = pd.DataFrame([row for _, row in keyed], columns=list(SOURCE_COLUMNS))
    return ingest(frame, dictionary, pseudonyms, source="FHIR R4", time_unit="h",
                  reference=reference, repairs=repairs)
