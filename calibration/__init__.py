"""Calibration of twins to patient data.

- records: ``validate_records``, ``read_subject``, ``subject_ids`` (the records table, see
  ``calibration._records``), ``theoph_records`` (a real data set), ``theoph_problem`` and
  ``theoph_population`` (R nlme's model of it);
- problems: ``Problem``, ``FreeParameter``, transforms ``Log``, ``Bounded``, ``Identity``,
  priors ``Normal``, ``LogNormal``, observation models ``Additive``, ``Proportional``,
  ``Combined``, ``LogNormalError``;
- individual fits: ``fit_individual`` (multi-start, Laplace uncertainty, identifiability),
  ``profile``, ``minimise`` (damped Newton, L-BFGS or Adam), ``objective_of`` (a subject's
  objective with forward-mode derivatives);
- cohort fits: ``fit_cohort`` (all subjects in one vmapped program), ``loop_fit`` (the same
  in a Python loop, for comparison).

- population fits: ``PopulationProblem`` (random effects, design, diagonal or full
  covariance), ``fit_population`` (FOCE with interaction; standard errors, empirical Bayes
  estimates; MPI ranks share subjects), ``population_minus_2_log_likelihood``,
  ``individual_posteriors`` (each subject's Laplace posterior with the population as prior);
- synthetic cohorts: ``simulate_population`` (records and the truth behind them).
"""

from ._cohort import CohortFit as CohortFit
from ._cohort import fit_cohort as fit_cohort
from ._cohort import loop_fit as loop_fit
from ._credibility import CredibilityError as CredibilityError
from ._individual import IndividualFit as IndividualFit
from ._individual import fit_individual as fit_individual
from ._individual import minimise as minimise
from ._individual import objective_of as objective_of
from ._individual import profile as profile
from ._population import IndividualPosteriors as IndividualPosteriors
from ._population import PopulationFit as PopulationFit
from ._population import PopulationProblem as PopulationProblem
from ._population import fit_population as fit_population
from ._population import individual_posteriors as individual_posteriors
from ._population import population_minus_2_log_likelihood as population_minus_2_log_likelihood
from ._problem import Additive as Additive
from ._problem import Bounded as Bounded
from ._problem import Combined as Combined
from ._problem import FreeParameter as FreeParameter
from ._problem import Identity as Identity
from ._problem import Log as Log
from ._problem import LogNormal as LogNormal
from ._problem import LogNormalError as LogNormalError
from ._problem import Normal as Normal
from ._problem import Problem as Problem
from ._problem import Proportional as Proportional
from ._records import COLUMNS as COLUMNS
from ._records import ROUTES as ROUTES
from ._records import SubjectData as SubjectData
from ._records import read_subject as read_subject
from ._records import read_subjects as read_subjects
from ._records import stack_subjects as stack_subjects
from ._records import subject_ids as subject_ids
from ._records import validate_records as validate_records
from ._synthetic import simulate_population as simulate_population
from ._theoph import theoph_population as theoph_population
from ._theoph import theoph_problem as theoph_problem
from ._theoph import theoph_records as theoph_records
