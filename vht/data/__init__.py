"""Patient data in: formats, units, checks and pseudonyms (``vht.data``).

- ``DataDictionary`` with ``Observed``, ``Dose``, ``Covariate``: what a study reads;
- readers: ``read_tidy_csv``, ``read_nonmem``, ``read_fhir``, ``read_omop`` -> ``PatientData``
  (the records table calibration reads, covariates, the repairs made);
- ``ingest``: the shared checks behind every reader (its module documents the policy);
- units: ``parse_ucum``, ``ucum_code``, ``convert`` (UCUM codes into vht's pint registry);
- privacy: ``Pseudonymizer`` (keyed HMAC pseudonyms), ``private_open``, ``private_umask``;
- errors: ``DataError`` and its kinds ``SchemaError``, ``UnitError``, ``CodeError``,
  ``ValueDataError``, ``TimeError``, ``PrivacyError``.
"""

from ._dictionary import Covariate as Covariate
from ._dictionary import DataDictionary as DataDictionary
from ._dictionary import Dose as Dose
from ._dictionary import Observed as Observed
from ._errors import CodeError as CodeError
from ._errors import DataError as DataError
from ._errors import SchemaError as SchemaError
from ._errors import TimeError as TimeError
from ._errors import UnitError as UnitError
from ._errors import ValueDataError as ValueDataError
from ._fhir import read_fhir as read_fhir
from ._ingest import RECORD_COLUMNS as RECORD_COLUMNS
from ._ingest import SOURCE_COLUMNS as SOURCE_COLUMNS
from ._ingest import PatientData as PatientData
from ._ingest import Repair as Repair
from ._ingest import ingest as ingest
from ._ingest import is_identifying as is_identifying
from ._nonmem import read_nonmem as read_nonmem
from ._omop import read_omop as read_omop
from ._privacy import PrivacyError as PrivacyError
from ._privacy import Pseudonymizer as Pseudonymizer
from ._privacy import make_private as make_private
from ._privacy import private_open as private_open
from ._privacy import private_umask as private_umask
from ._tidy_csv import read_tidy_csv as read_tidy_csv
from ._ucum import UcumUnit as UcumUnit
from ._ucum import convert as convert
from ._ucum import parse_ucum as parse_ucum
from ._ucum import ucum_code as ucum_code
