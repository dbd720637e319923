"""Conserved-flow networks: compartments that own a conserved quantity, and conductances.

A compartment holds a conserved quantity (blood volume in mL, drug amount in mg) and exposes
a potential (pressure, concentration). A conductance computes the flow between two
compartments from their potentials. Every flow is subtracted from its upstream compartment and
added to its downstream one, so the network conserves its total by construction; explicit
Runge-Kutta methods preserve such linear invariants to round-off, so a conservation test can
ask for 1e-12 relative and a larger drift is a bookkeeping bug.

``None`` as an end of a link is the outside world: a sink (elimination, bleeding) or a source.
Solutes carried by the flows (``Network.solute_rates``) are advected upwind, so their mass is
conserved by the same construction.

Organ models build a ``Network`` inside ``rates`` from their own flat, named parameters; the
network itself holds no parameters the user addresses by name.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array


@jax.custom_jvp
def softplus(x: Array) -> Array:
    """``log(1 + exp(x))``, written as ``max(x, 0) + log1p(exp(-|x|))``: the same values as
    ``jax.nn.softplus`` (which computes exactly this), without its guard for NaN inputs.

    Why organs use it: ``vht.export_sbml`` writes jax's guard as a ``piecewise`` on
    ``x != x``, and where one softplus feeds another (the baroreflex's ceiling inside its
    sympathetic drive) the nested ``piecewise`` made libroadrunner's compilation of the
    exported circulation take more than 25 minutes (11 s without them). The derivative is
    the logistic function, given as a rule: through ``max`` and ``abs`` autodiff would say 0
    at exactly ``x = 0`` (a valve with equal pressures on both sides) instead of 1/2.
    """
    return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return softplus(x), jax.nn.sigmoid(x) * dx


class AbstractCompartment(eqx.Module):
    """Owns a conserved content and maps it to a potential."""

    @abc.abstractmethod
    def potential(self, t: Array, content: Array) -> Array:
        """Potential (pressure, concentration) at content ``content``."""


class Compliance(AbstractCompartment):
    """Linear elastic vessel: ``p = (V - V0) / C`` (mmHg, with V in mL and C in mL/mmHg)."""

    compliance: Array = eqx.field(converter=jnp.asarray)  # mL/mmHg
    unstressed_volume: Array = eqx.field(converter=jnp.asarray)  # mL

    def potential(self, t, content):
        return (content - self.unstressed_volume) / self.compliance


class VolumeOfDistribution(AbstractCompartment):
    """Well-mixed space: concentration ``c = A / V`` (amount over volume)."""

    volume: Array = eqx.field(converter=jnp.asarray)

    def potential(self, t, content):
        return content / self.volume


class Depot(AbstractCompartment):
    """A store whose potential is its content (an oral dose in the gut, a subcutaneous depot)."""

    def potential(self, t, content):
        return content


class AbstractConductance(eqx.Module):
    """Computes the flow from upstream to downstream potential (positive downstream)."""

    @abc.abstractmethod
    def flow(self, t: Array, upstream: Array, downstream: Array) -> Array:
        """Flow from upstream to downstream."""


class Resistance(AbstractConductance):
    """Poiseuille resistance: ``q = (p_up - p_down) / R``."""

    resistance: Array = eqx.field(converter=jnp.asarray)

    def flow(self, t, upstream, downstream):
        return (upstream - downstream) / self.resistance


class IdealValve(AbstractConductance):
    """Ideal diode with forward resistance: ``q = max(p_up - p_down, 0) / R``.

    The kink at zero pressure difference is exact valve behaviour, but costs a high-order
    solver its order at every opening and closing (see ``SmoothValve``).
    """

    resistance: Array = eqx.field(converter=jnp.asarray)

    def flow(self, t, upstream, downstream):
        return jnp.maximum(upstream - downstream, 0.0) / self.resistance


class SmoothValve(AbstractConductance):
    """Diode regularised by a softplus: ``q = softplus(k (p_up - p_down)) / (k R)``.

    ``sharpness`` k (1/pressure unit) sets the width 1/k of the transition; for a pressure
    difference of a few times 1/k the valve is fully open (q -> dp / R) or closed (q -> 0).
    The flow is infinitely differentiable, so adaptive and fixed-step solvers keep their order.
    """

    resistance: Array = eqx.field(converter=jnp.asarray)
    sharpness: Array = eqx.field(converter=jnp.asarray)

    def flow(self, t, upstream, downstream):
        k = self.sharpness
        return softplus(k * (upstream - downstream)) / (k * self.resistance)


class Clearance(AbstractConductance):
    """Diffusive exchange or elimination: ``J = CL (c_up - c_down)`` (clearance x concentration)."""

    clearance: Array = eqx.field(converter=jnp.asarray)

    def flow(self, t, upstream, downstream):
        return self.clearance * (upstream - downstream)


class FirstOrderTransfer(AbstractConductance):
    """One-way first-order transfer ``J = k * p_up`` (absorption from a depot)."""

    rate_constant: Array = eqx.field(converter=jnp.asarray)

    def flow(self, t, upstream, downstream):
        return self.rate_constant * upstream


class Network(eqx.Module):
    """Compartments joined by conductances.

    ``links`` is a tuple of ``(conductance_name, upstream, downstream)`` where either end may
    be ``None`` (the outside world, at potential zero).

    ```python
    net = Network(
        compartments={"arteries": Compliance(1.5, 600.0), "veins": Compliance(70.0, 2800.0)},
        conductances={"systemic": Resistance(1.0), "return": Resistance(0.1)},
        links=(("systemic", "arteries", "veins"), ("return", "veins", "arteries")),
    )
    dV = net.rates(t, {"arteries": 700.0, "veins": 3100.0})
    ```
    """

    compartments: dict[str, AbstractCompartment]
    conductances: dict[str, AbstractConductance]
    links: tuple[tuple[str, str | None, str | None], ...] = eqx.field(static=True)

    def __check_init__(self):
        for name, upstream, downstream in self.links:
            if name not in self.conductances:
                raise ValueError(f"network link {name!r} names no conductance")
            for end in (upstream, downstream):
                if end is not None and end not in self.compartments:
                    raise ValueError(f"network link {name!r} names unknown compartment {end!r}")
            if upstream is None and downstream is None:
                raise ValueError(f"network link {name!r} joins the outside world to itself")

    @property
    def closed(self) -> bool:
        """True when no link reaches the outside world (the total is then conserved)."""
        return all(u is not None and d is not None for _, u, d in self.links)

    def potentials(self, t, contents: Mapping[str, Array]) -> dict[str, Array]:
        return {name: c.potential(t, contents[name]) for name, c in self.compartments.items()}

    def flows(self, t, potentials: Mapping[str, Array]) -> dict[str, Array]:
        """Flow through every link (positive from upstream to downstream)."""
        out = {}
        for name, upstream, downstream in self.links:
            p_up = potentials[upstream] if upstream is not None else 0.0
            p_down = potentials[downstream] if downstream is not None else 0.0
            out[name] = self.conductances[name].flow(t, p_up, p_down)
        return out

    def balance(
        self, flows: Mapping[str, Array], sources: Mapping[str, Array] | None = None
    ) -> dict[str, Array]:
        """Rate of change of each compartment's content: inflows - outflows + sources."""
        rates = {name: jnp.zeros(()) for name in self.compartments}
        for name, upstream, downstream in self.links:
            if upstream is not None:
                rates[upstream] = rates[upstream] - flows[name]
            if downstream is not None:
                rates[downstream] = rates[downstream] + flows[name]
        for name, source in (sources or {}).items():
            if name not in rates:
                raise ValueError(f"source for unknown compartment {name!r}")
            rates[name] = rates[name] + source
        return rates

    def rates(
        self, t, contents: Mapping[str, Array], sources: Mapping[str, Array] | None = None
    ) -> dict[str, Array]:
        """Rate of change of each compartment's content given the contents."""
        return self.balance(self.flows(t, self.potentials(t, contents)), sources)

    def solute_rates(
        self,
        flows: Mapping[str, Array],
        concentrations: Mapping[str, Array],
        sources: Mapping[str, Array] | None = None,
    ) -> dict[str, Array]:
        """Rate of change of a solute's mass carried by the volume flows, upwind.

        For a link with flow q from u to d the solute flux is ``max(q,0) c_u + min(q,0) c_d``,
        subtracted from u and added to d. A solute leaving to the outside world leaves at its
        upstream concentration; one entering from it must come through ``sources``.
        """
        fluxes = {}
        for name, upstream, downstream in self.links:
            q = flows[name]
            c_up = concentrations[upstream] if upstream is not None else 0.0
            c_down = concentrations[downstream] if downstream is not None else 0.0
            fluxes[name] = jnp.maximum(q, 0.0) * c_up + jnp.minimum(q, 0.0) * c_down
        return self.balance(fluxes, sources)
