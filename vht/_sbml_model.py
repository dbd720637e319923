"""An SBML model read into vht's terms: which symbols are parameters, which are states, and
the ordered programs that compute everything else.

SBML semantics as this reader applies them (SBML Level 3 Version 2 core, section 4 and
appendix; Level 2 read the same way):

- **Species** are integrated as amounts. In expressions a species' symbol is its
  concentration, amount / size of its compartment, unless ``hasOnlySubstanceUnits`` is true
  or the compartment has spatial dimension 0 (then it is its amount). Reactions change the
  amounts: d amount/dt = sum over reactions of stoichiometry x rate (x the species' or the
  model's conversion factor). A boundary or constant species is not changed by reactions.
  A species with a rate rule is integrated as its symbol (concentration or amount), as the
  rule gives that symbol's derivative.
- **Rules**: an assignment rule makes its symbol a computed value; a rate rule makes it a
  state with that derivative. Algebraic rules are not supported (``UnsupportedSBML``).
- **Initial values**: attribute values, overridden by initial assignments, with assignment
  rules holding at t0 too; all evaluated at t0 in dependency order. A species' initial
  concentration becomes an amount by multiplying with its compartment's initial size.
- **Parameters** of the vht organ: global parameters, compartments and local (reaction)
  parameters that are constant (no rule, no initial assignment); a local parameter is named
  ``"<reaction id>.<parameter id>"``. A symbol that is constant but has an initial
  assignment is a derived constant: the initial values depend on the parameters alone, so
  it is recomputed from the current parameter values (not integrated: an initial assignment
  to inf or NaN is a value, not a failed state).
- **Reaction ids** in expressions are the reactions' rates; a species reference's id is its
  stoichiometry; ``rateOf(x)`` is x's time derivative.
- Not supported, each an ``UnsupportedSBML`` naming the element: events, algebraic rules,
  fast reactions, delays, SBML Level 3 packages that change the math, and variable
  stoichiometry given by a rate rule.

Everything a right-hand-side evaluation needs is one program, a tuple of
``(kind, target, expression)`` with kind ``"value"`` (a symbol's value) or ``"rate"`` (a
symbol's time derivative), ordered so that each expression reads only what came before.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from ._sbml_math import UnsupportedSBML, from_ast, function_definition, rate_of_targets, symbols

AMOUNT = ":amount"  # suffix of the environment key of a species' amount


@dataclasses.dataclass(frozen=True)
class SBMLModelSpec:
    """A model read from SBML (hashable: it identifies the model's equations)."""

    model_id: str
    level: int
    version: int
    parameters: tuple[tuple[str, float, str], ...]  # (name, value in the file, unit)
    states: tuple[tuple[str, str, str], ...]  # (state name, environment key, unit)
    derived: tuple[str, ...]  # constants set by initial assignments (from the parameters)
    program: tuple[tuple[str, str, tuple], ...]  # ("value" | "rate", key, expression)
    initial: tuple[tuple[str, tuple], ...]  # (key, expression) at t0, in dependency order
    outputs: tuple[tuple[str, str, str], ...]  # (port name, environment key, unit)
    inputs: tuple[tuple[str, str], ...]  # (port name = parameter id, unit)
    time_unit: str
    symbol_units: tuple[tuple[str, str], ...]  # every symbol's unit ("unknown" if undeclared)
    species: tuple[tuple[str, str, bool], ...]  # (id, compartment, symbol is a concentration)
    initial_rates: tuple[str, ...]  # symbols whose rateOf an initial value reads


def substitute_avogadro(expression: tuple, value: float) -> tuple:
    """``expression`` with the csymbol avogadro replaced by its number."""
    if expression[0] == "avogadro":
        return ("num", value)
    if expression[0] in ("num", "sym", "time", "rateOf"):
        return expression
    return (expression[0],) + tuple(substitute_avogadro(e, value) for e in expression[1:])


def _order(nodes: Mapping[tuple[str, str], set], what: str) -> list[tuple[str, str]]:
    """Nodes in dependency order (each after what it reads); a cycle is an error."""
    order, state = [], {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        if state.get(node) == "active":
            loop = " -> ".join(f"{k}:{n}" for k, n in [*path[path.index(node):], node])
            raise UnsupportedSBML(f"{what}: the rules form a cycle ({loop}); algebraic "
                                  "loops are not supported")
        state[node] = "active"
        for dependency in sorted(nodes[node]):
            if dependency in nodes:
                visit(dependency, [*path, node])
        state[node] = "done"
        order.append(node)

    for node in sorted(nodes):
        visit(node, [])
    return order


def read_model(document, *, units: Mapping[str, str] | None = None,
               time_unit: str | None = None, inputs=()) -> SBMLModelSpec:
    """Read a libsbml ``SBMLDocument`` (see the module docstring for the semantics)."""
    from ._sbml_units import element_unit, model_time_unit

    model = document.getModel()
    if model is None:
        raise UnsupportedSBML("the SBML document holds no model")
    where = f"model {model.getId() or '(no id)'!r}"
    _refuse_unsupported(document, model, where)
    units = dict(units or {})

    functions = {}
    for fd in model.getListOfFunctionDefinitions():
        if fd.isSetMath():  # one without math is unusable: calling it is the error
            functions[fd.getId()] = function_definition(fd, functions)

    # the csymbol avogadro: 6.02214179e23 (CODATA 2006), the value of the SBML Level 3 specs
    # and of the test suite's expected results for every level
    avogadro = 6.02214179e23

    def expr(math_node, element):
        return substitute_avogadro(from_ast(math_node, functions, element), avogadro)

    compartments = {c.getId(): c for c in model.getListOfCompartments()}
    species = {s.getId(): s for s in model.getListOfSpecies()}
    globals_ = {p.getId(): p for p in model.getListOfParameters()}
    # a rule or initial assignment without math has no effect (SBML L3v2, section 4.11)
    assignment = {r.getVariable(): r for r in model.getListOfRules()
                  if r.isAssignment() and r.isSetMath()}
    rate_rules = {r.getVariable(): r for r in model.getListOfRules()
                  if r.isRate() and r.isSetMath()}
    initial_assignments = {a.getSymbol(): a for a in model.getListOfInitialAssignments()
                           if a.isSetMath()}

    def concentration_symbol(s) -> bool:
        c = compartments[s.getCompartment()]
        return not s.getHasOnlySubstanceUnits() and c.getSpatialDimensionsAsDouble() != 0

    # species references with ids: their stoichiometry is a symbol
    references = {}
    level2 = document.getLevel() < 3

    def stoichiometry_math(ref) -> bool:  # Level 2's stoichiometryMath
        return hasattr(ref, "isSetStoichiometryMath") and ref.isSetStoichiometryMath()

    def stoichiometry_value(ref) -> float:  # Level 2 defaults to 1, Level 3 has no default
        return float(ref.getStoichiometry()) if ref.isSetStoichiometry() or level2 else math.nan

    for reaction in model.getListOfReactions():
        for ref in list(reaction.getListOfReactants()) + list(reaction.getListOfProducts()):
            if ref.isSetId() and ref.getId() and not stoichiometry_math(ref):
                references[ref.getId()] = ref

    # -- the symbols' roles -------------------------------------------------------------------
    parameters, derived, state_symbols = [], [], []
    initial_exprs: dict[str, tuple] = {}

    def attribute_value(element) -> float:
        for getter, is_set in (("getValue", "isSetValue"), ("getSize", "isSetSize"),
                               ("getStoichiometry", "isSetStoichiometry")):
            if hasattr(element, getter) and getattr(element, is_set)():
                return float(getattr(element, getter)())
        return math.nan

    for sid, element in list(compartments.items()) + list(globals_.items()):
        if sid in assignment:
            continue  # computed
        if sid in rate_rules:
            state_symbols.append(sid)
        elif sid in initial_assignments:
            derived.append(sid)
        else:
            parameters.append((sid, attribute_value(element), element_unit(element, units)))
            continue
        initial_exprs[sid] = ("num", attribute_value(element))

    for sid, ref in references.items():
        if sid not in assignment:
            value = stoichiometry_value(ref)
            initial_exprs[sid] = ("num", value)
            if sid in rate_rules:
                state_symbols.append(sid)
            elif sid in initial_assignments:
                derived.append(sid)
            else:
                parameters.append((sid, value, "dimensionless"))

    species_amount_states = []
    for sid, s in species.items():
        if sid in assignment:
            continue
        compartment = s.getCompartment()
        conc = concentration_symbol(s)
        if s.isSetInitialAmount():
            amount = float(s.getInitialAmount())
            initial_exprs[sid] = (("divide", ("num", amount), ("sym", compartment)) if conc
                                  else ("num", amount))
        elif s.isSetInitialConcentration():
            value = float(s.getInitialConcentration())
            initial_exprs[sid] = (("num", value) if conc else
                                  ("times", ("num", value), ("sym", compartment)))
        else:
            initial_exprs[sid] = ("num", math.nan)
        if sid in rate_rules:
            state_symbols.append(sid)  # integrated as its symbol (the rule's derivative)
        else:
            species_amount_states.append(sid)
    for sid, a in initial_assignments.items():
        if sid not in (set(compartments) | set(species) | set(globals_) | set(references)):
            raise UnsupportedSBML(f"{where}: initial assignment to {sid!r}, which is not a "
                                  "compartment, species, parameter or species reference")
        initial_exprs[sid] = expr(a.getMath(), f"initial assignment to {sid!r}")

    # -- reactions: rates, stoichiometries, species' derivatives -------------------------------
    reaction_rates, contributions = {}, {s: [] for s in species_amount_states}
    local_parameters = []
    model_factor = model.getConversionFactor() if model.isSetConversionFactor() else None
    for reaction in model.getListOfReactions():
        rid = reaction.getId()
        law = reaction.getKineticLaw()
        label = f"reaction {rid!r}"
        if law is None or law.getMath() is None:
            rate = ("num", math.nan)
        else:
            rate = expr(law.getMath(), f"kinetic law of {label}")
            locals_ = list(law.getListOfLocalParameters()) + list(law.getListOfParameters())
            renamed = {}
            for p in locals_:
                name = f"{rid}.{p.getId()}"
                renamed[p.getId()] = ("sym", name)
                value = float(p.getValue()) if p.isSetValue() else math.nan
                local_parameters.append((name, value, element_unit(p, units)))
            if renamed:
                from ._sbml_math import substitute

                rate = substitute(rate, renamed)
        reaction_rates[rid] = rate
        for refs, sign in ((reaction.getListOfReactants(), -1.0),
                           (reaction.getListOfProducts(), 1.0)):
            for ref in refs:
                target = ref.getSpecies()
                if target not in contributions:
                    continue  # a rule owns it
                s = species[target]
                if s.getBoundaryCondition() or s.getConstant():
                    continue
                if stoichiometry_math(ref):
                    stoichiometry = expr(ref.getStoichiometryMath().getMath(),
                                         f"stoichiometry of {target!r} in {label}")
                elif ref.getId() in references:
                    stoichiometry = ("sym", ref.getId())
                else:
                    stoichiometry = ("num", stoichiometry_value(ref))
                term = ("times", ("num", sign), stoichiometry, ("sym", rid))
                factor = s.getConversionFactor() if s.isSetConversionFactor() else model_factor
                if factor:
                    term = ("times", term, ("sym", factor))
                contributions[target].append(term)
    parameters += local_parameters

    # -- the program ---------------------------------------------------------------------------
    nodes: dict[tuple[str, str], tuple] = {}
    for sid, rule in assignment.items():
        nodes[("value", sid)] = expr(rule.getMath(), f"assignment rule for {sid!r}")
    for rid, rate in reaction_rates.items():
        nodes[("value", rid)] = rate
    for sid in species_amount_states:
        s = species[sid]
        key = sid + AMOUNT
        nodes[("value", sid)] = (("divide", ("sym", key), ("sym", s.getCompartment()))
                                 if concentration_symbol(s) else ("sym", key))
        nodes[("rate", key)] = ("plus",) + tuple(contributions[sid])
    for sid in state_symbols:
        if sid in rate_rules:
            nodes[("rate", sid)] = expr(rate_rules[sid].getMath(), f"rate rule for {sid!r}")
        else:
            nodes[("rate", sid)] = ("num", 0.0)
    # rateOf of a species held as an amount: (d amount/dt - symbol d size/dt) / size
    rate_targets = set()
    for expression in list(nodes.values()) + list(initial_exprs.values()):
        rate_targets |= rate_of_targets(expression)
    state_keys = {sid for sid in state_symbols} | {s + AMOUNT for s in species_amount_states}
    for target in sorted(rate_targets):
        if ("rate", target) in nodes:
            continue
        if target in species_amount_states:
            s = species[target]
            c = s.getCompartment()
            if concentration_symbol(s):
                nodes[("rate", target)] = (
                    "divide", ("minus", ("rateOf", target + AMOUNT),
                               ("times", ("sym", target), ("rateOf", c))), ("sym", c))
            else:
                nodes[("rate", target)] = ("rateOf", target + AMOUNT)
            if ("rate", c) not in nodes:
                nodes[("rate", c)] = ("num", 0.0)
        elif target in {p[0] for p in parameters} | set(derived):
            nodes[("rate", target)] = ("num", 0.0)
        elif target in assignment:
            raise UnsupportedSBML(f"{where}: rateOf({target}) of an assigned symbol is not "
                                  "supported")
        else:
            raise UnsupportedSBML(f"{where}: rateOf({target}) of an unknown symbol")

    def dependencies(expression):
        deps = {("value", s) for s in symbols(expression) if s not in rate_of_targets(
            expression) or ("value", s) in nodes}
        deps |= {("rate", s) for s in rate_of_targets(expression)}
        return deps

    known = ({p[0] for p in parameters} | state_keys | set(inputs) | set(derived))
    graph = {}
    for node, expression in nodes.items():
        graph[node] = dependencies(expression)
        for kind, name in graph[node]:
            if kind == "value" and ("value", name) not in nodes and name not in known:
                raise UnsupportedSBML(f"{where}: {node[1]!r} reads {name!r}, which is not "
                                      "defined in the model")
    order = _order(graph, where)
    program = tuple((kind, name, nodes[(kind, name)]) for kind, name in order)

    # -- initial values: attributes, initial assignments, assignment rules, at t0 -------------
    init_nodes = dict(initial_exprs)
    for sid in assignment:
        init_nodes[sid] = nodes[("value", sid)]
    for rid in reaction_rates:
        init_nodes.setdefault(rid, reaction_rates[rid])
    for sid in species_amount_states:
        s = species[sid]
        init_nodes[sid + AMOUNT] = (("times", ("sym", sid), ("sym", s.getCompartment()))
                                    if concentration_symbol(s) else ("sym", sid))
    init_graph = {("value", k): {("value", s) for s in symbols(e)} for k, e in
                  init_nodes.items()}
    init_order = _order(init_graph, where + " (initial values)")
    initial = tuple((k, init_nodes[k]) for _, k in init_order)

    # -- names, units, ports ------------------------------------------------------------------
    parameters = [p for p in parameters if p[0] not in set(inputs)]
    for name in inputs:
        if name not in globals_ or name in assignment or name in rate_rules:
            raise UnsupportedSBML(f"{where}: input {name!r} must be a constant global "
                                  "parameter of the model")
    symbol_units = {}
    for sid, element in list(compartments.items()) + list(globals_.items()):
        symbol_units[sid] = element_unit(element, units)
    for sid, s in species.items():
        symbol_units[sid] = element_unit(s, units)
        symbol_units[sid + AMOUNT] = element_unit(s, units, amount=True)
    for rid, reaction in zip(reaction_rates, model.getListOfReactions()):
        law = reaction.getKineticLaw()  # a reaction's rate has its kinetic law's units
        symbol_units[rid] = (units[rid] if rid in units else element_unit(law, units)
                             if law is not None and law.isSetMath() else "unknown")
    states = []
    for sid in state_symbols:
        states.append((sid, sid, symbol_units.get(sid, "dimensionless")))
    for sid in species_amount_states:
        states.append((sid, sid + AMOUNT, symbol_units[sid + AMOUNT]))
    outputs = []
    for sid in species:
        if sid in assignment:
            outputs.append((sid, sid, symbol_units[sid]))
        elif concentration_symbol(species[sid]):
            outputs.append((f"{sid}_concentration", sid, symbol_units[sid]))
    for sid in assignment:
        if sid not in species:
            outputs.append((sid, sid, symbol_units.get(sid, "dimensionless")))
    for rid in reaction_rates:
        outputs.append((rid, rid, symbol_units[rid]))
    return SBMLModelSpec(
        model_id=model.getId() or "sbml_model", level=document.getLevel(),
        version=document.getVersion(), parameters=tuple(parameters), states=tuple(states),
        derived=tuple(derived), program=program, initial=initial, outputs=tuple(outputs),
        inputs=tuple((name, symbol_units[name]) for name in inputs),
        time_unit=time_unit or model_time_unit(model),
        symbol_units=tuple(sorted(symbol_units.items())),
        species=tuple((sid, s.getCompartment(), concentration_symbol(s))
                      for sid, s in species.items()),
        initial_rates=tuple(sorted(set().union(*(rate_of_targets(e) for _, e in initial)))))


def _refuse_unsupported(document, model, where: str) -> None:
    # packages exist in Level 3 only (Level 2's layout lives in annotations: no math)
    for k in range(document.getNumPlugins() if document.getLevel() >= 3 else 0):
        plugin = document.getPlugin(k)
        package = plugin.getPackageName()
        # libsbml's own plugin for Level 3 Version 2 math is part of core, not a package; a
        # package that does not change the math (layout, render) is declared not required
        if package and package != "l3v2extendedmath" and document.getPackageRequired(
                package):
            raise UnsupportedSBML(f"{where}: the SBML package {package!r} is not supported")
    if model.getNumEvents():
        event = model.getEvent(0)
        raise UnsupportedSBML(f"{where}: event {event.getId() or '(no id)'!r} is not "
                              f"supported ({model.getNumEvents()} events): express it as a "
                              "vht scenario (Bolus, ParameterStep, Trigger) instead")
    for rule in model.getListOfRules():
        if rule.isAlgebraic():
            raise UnsupportedSBML(f"{where}: algebraic rule "
                                  f"{rule.getMetaId() or rule.getId() or '(no id)'!r} is not "
                                  "supported: vht solves explicit ODEs")
    for reaction in model.getListOfReactions():
        if reaction.isSetFast() and reaction.getFast():
            raise UnsupportedSBML(f"{where}: fast reaction {reaction.getId()!r} is not "
                                  "supported")
