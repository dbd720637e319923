"""vht: virtual human twins.

Differentiable physiological ODE models (equinox Modules solved with diffrax), composed from
organ models into twins, driven by treatment scenarios, and written out as xarray/HDF5.

The public API, in the order a user meets it:

- organs: ``AbstractOrgan``, ``State``, ``Input``, ``Output``, ``parameter``
  (network building blocks in ``vht.network``);
- composition: ``Twin``;
- scenarios: ``Scenario``, ``Bolus``, ``OralDose``, ``Infusion``, ``Meal``, ``ParameterStep``,
  ``Trigger``, ``stack``;
- solving: ``simulate``, ``Solution``, ``Status``, ``steady_state``, ``SteadyState``;
  ``simulate_closed_form`` for linear organs that declare their impulse responses;
- ensembles: ``VirtualPopulation``, ``LogNormal``, ``Allometry``, ``AdultCovariates``,
  ``Sweep``, ``run_sweep``, ``open_sweep``, ``SweepResult``;
- results: ``to_dataset``, ``save_dataset``, ``load_dataset``, ``model_hash``,
  ``parameter_hash``;
- twin files: ``builder``, ``save_twin``, ``load_twin``, ``load_posterior``;
- units and time: ``TIME_UNIT`` (minutes), ``HOUR``, ``DAY``, ``unit_registry``,
  ``conversion_factor``;
- what-if: ``read_whatif``, ``run_whatif``, ``write_whatif``, ``ScenarioFileError`` (the
  scenario files of ``vht whatif``); ``run_optimize``, ``write_optimize``,
  ``OptimizeResult`` (their ``[optimize]`` arm, ``vht optimize``);
- plots and diagrams: ``plot_signal``, ``twin_diagram``;
- distributed: ``vht.distributed`` (the collectives; the one module that imports mpi4jax).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vht")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from . import _distributed as distributed
from . import data as data
from . import network as network
from ._closed_form import simulate_closed_form as simulate_closed_form
from ._diagram import twin_diagram as twin_diagram
from ._ensemble import Sweep as Sweep
from ._ensemble import SweepResult as SweepResult
from ._ensemble import open_sweep as open_sweep
from ._ensemble import run_sweep as run_sweep
from ._hashing import model_hash as model_hash
from ._hashing import organ_hashes as organ_hashes
from ._hashing import parameter_hash as parameter_hash
from ._optimize import OptimizeResult as OptimizeResult
from ._optimize import run_optimize as run_optimize
from ._optimize import write_optimize as write_optimize
from ._organ import AbstractOrgan as AbstractOrgan
from ._organ import Input as Input
from ._organ import Output as Output
from ._organ import ParameterInfo as ParameterInfo
from ._organ import State as State
from ._organ import parameter as parameter
from ._plots import plot_signal as plot_signal
from ._report import Section as Section
from ._report import markdown_document as markdown_document
from ._report import write_document as write_document
from ._results import load_dataset as load_dataset
from ._results import save_dataset as save_dataset
from ._results import to_dataset as to_dataset
from ._sbml_export import export_sbml as export_sbml
from ._sbml_math import UnsupportedSBML as UnsupportedSBML
from ._sbml_organ import SBMLOrgan as SBMLOrgan
from ._sbml_organ import import_sbml as import_sbml
from ._scenario import AbstractIntervention as AbstractIntervention
from ._scenario import Bolus as Bolus
from ._scenario import Infusion as Infusion
from ._scenario import Meal as Meal
from ._scenario import OralDose as OralDose
from ._scenario import ParameterStep as ParameterStep
from ._scenario import Scenario as Scenario
from ._scenario import Trigger as Trigger
from ._scenario import stack as stack
from ._simulate import Solution as Solution
from ._simulate import Status as Status
from ._simulate import simulate as simulate
from ._simulate_ensemble import simulate_ensemble as simulate_ensemble
from ._steady_state import SteadyState as SteadyState
from ._steady_state import steady_state as steady_state
from ._twin import Connection as Connection
from ._twin import Twin as Twin
from ._twin_file import builder as builder
from ._twin_file import load_posterior as load_posterior
from ._twin_file import load_twin as load_twin
from ._twin_file import save_twin as save_twin
from ._units import DAY as DAY
from ._units import HOUR as HOUR
from ._units import MINUTE as MINUTE
from ._units import TIME_UNIT as TIME_UNIT
from ._units import conversion_factor as conversion_factor
from ._units import units as unit_registry
from ._virtual_population import AbstractPopulation as AbstractPopulation
from ._virtual_population import AdultCovariates as AdultCovariates
from ._virtual_population import Allometry as Allometry
from ._virtual_population import LogNormal as LogNormal
from ._virtual_population import VirtualPopulation as VirtualPopulation
from ._whatif import WhatIfResult as WhatIfResult
from ._whatif import run_whatif as run_whatif
from ._whatif import write_whatif as write_whatif
from ._whatif_file import ScenarioFileError as ScenarioFileError
from ._whatif_file import read_whatif as read_whatif
