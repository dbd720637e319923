"""One compiled program for many SBML models: their right-hand sides as register-machine tapes.

The conformance harness imports each test case with ``vht.import_sbml``, whose organ evaluates
its model by tracing the expressions into JAX operations: every model is a new program, and
compiling a solve takes 1-3 s on 2 cores. 687 cases would spend most of their time compiling.
Here the same program (``SBMLModelSpec.program``: the ordered value and rate nodes) is lowered
to data instead:

- a register file per model: every symbol, every intermediate value, the states, the rates,
  the time, and the constants (parameters, derived constants, numbers) preloaded;
- a tape of instructions ``(opcode, destination, a, b, c)``, each one operator of the
  expression language applied to registers ``a``, ``b`` (and ``c`` for a select), n-ary
  operators and piecewise lowered to chains.

``run_tapes`` pads a batch of tapes to one size, and one compiled diffrax solve evaluates
every model of the batch by interpreting its tape (``lax.switch`` over the opcodes inside a
``fori_loop`` over the instructions), vmapped over the models. A batch compiles once whatever
its models are.

The tape is a second implementation of the organ's right-hand side, so the harness checks
each model's tape against the organ itself (``vht.SBMLOrgan.rates``, evaluated eagerly, no
compilation) at the initial state: ``run_tapes`` returns the tape's rates there.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from vht._sbml_math import _BINARY, _RELATIONAL, _UNARY

# opcodes: 0 copy, then the unary functions, binary functions, relations, logic, select
UNARY = tuple(sorted(_UNARY))
BINARY = tuple(sorted(_BINARY)) + ("plus", "times", "max", "min")
RELATIONAL = tuple(sorted(_RELATIONAL))
LOGICAL = ("and", "or", "xor")
OPCODES = ("copy",) + UNARY + BINARY + RELATIONAL + LOGICAL + ("not", "select")
CODE = {name: k for k, name in enumerate(OPCODES)}


@dataclasses.dataclass
class Tape:
    """A model's right-hand side as registers and instructions (see the module docstring)."""

    registers: np.ndarray  # initial register values: constants and parameters loaded
    instructions: np.ndarray  # (n, 5) int: opcode, destination, a, b, c
    state_registers: np.ndarray  # register of each state's value
    rate_registers: np.ndarray  # register of each state's derivative
    time_register: int
    index: dict  # environment key -> register


class _Lowering:
    def __init__(self):
        self.registers: list[float] = []
        self.index: dict = {}
        self.instructions: list[tuple[int, int, int, int, int]] = []
        self.constants: dict[float, int] = {}

    def register(self, key=None, value=math.nan) -> int:
        self.registers.append(value)
        if key is not None:
            self.index[key] = len(self.registers) - 1
        return len(self.registers) - 1

    def constant(self, value: float) -> int:
        key = ("const", repr(float(value)))
        if key not in self.index:
            self.register(key, float(value))
        return self.index[key]

    def emit(self, op: str, a: int, b: int = 0, c: int = 0, destination=None) -> int:
        destination = self.register() if destination is None else destination
        self.instructions.append((CODE[op], destination, a, b, c))
        return destination

    def lower(self, expression: tuple) -> int:
        """The register holding ``expression``'s value once the emitted code has run."""
        head = expression[0]
        if head == "num":
            return self.constant(expression[1])
        if head == "sym":
            return self.index[expression[1]]
        if head == "time":
            return self.index["__time__"]
        if head == "rateOf":
            return self.index[("rate", expression[1])]
        if head == "piecewise":
            parts = expression[1:]
            pairs, otherwise = (parts[:-1], parts[-1]) if len(parts) % 2 else (parts, None)
            result = self.constant(math.nan) if otherwise is None else self.lower(otherwise)
            for k in range(len(pairs) - 2, -1, -2):
                value, condition = self.lower(pairs[k]), self.lower(pairs[k + 1])
                result = self.emit("select", condition, value, result)
            return result
        args = [self.lower(e) for e in expression[1:]]
        if head in _UNARY or head == "not":
            return self.emit(head, args[0])
        if head in ("plus", "times", "max", "min", "and", "or", "xor"):
            empty = {"plus": 0.0, "times": 1.0, "and": 1.0, "or": 0.0, "xor": 0.0}
            if not args:
                return self.constant(empty[head])
            result = args[0]
            if len(args) == 1 and head in ("and", "or", "xor"):
                return self.emit("or", args[0], self.constant(0.0))  # a boolean of 0 or 1
            for arg in args[1:]:
                result = self.emit(head, result, arg)
            return result
        if head in _BINARY:
            return self.emit(head, args[0], args[1])
        if head in _RELATIONAL:  # pairwise along the arguments
            result = None
            for a, b in zip(args[:-1], args[1:]):
                pair = self.emit(head, a, b)
                result = pair if result is None else self.emit("and", result, pair)
            return result
        if head == "implies":
            return self.emit("or", self.emit("not", args[0]), args[1])
        raise ValueError(f"the tape has no operator {head!r}")


def lower(organ) -> Tape:
    """The tape of an imported organ, its parameters and derived constants loaded."""
    spec = organ.spec
    low = _Lowering()
    low.register("__time__", 0.0)
    for name, value in organ.values.items():
        low.register(name, float(value))
    if spec.derived:
        initial = organ._initial_environment()
        for key in spec.derived:
            low.register(key, float(initial[key]))
    state_registers = [low.register(key, 0.0) for _, key, _ in spec.states]
    for kind, key, _ in spec.program:
        low.register(("rate", key) if kind == "rate" else key)
    for kind, key, expression in spec.program:
        target = low.index[("rate", key) if kind == "rate" else key]
        low.emit("copy", low.lower(expression), destination=target)
    for _, key, _ in spec.states:  # states without a rate node stay constant
        if ("rate", key) not in low.index:
            low.index[("rate", key)] = low.constant(0.0)
    rate_registers = [low.index[("rate", key)] for _, key, _ in spec.states]
    instructions = np.array(low.instructions, dtype=np.int32).reshape(-1, 5)
    return Tape(np.array(low.registers, dtype=float), instructions,
                np.array(state_registers, dtype=np.int32),
                np.array(rate_registers, dtype=np.int32), low.index["__time__"], low.index)


def _branches():
    import jax.numpy as jnp

    from vht._sbml_math import _number, _truth

    def boolean(x):
        return jnp.where(_truth(x), 1.0, 0.0)

    fns = [lambda a, b, c: a]
    fns += [lambda a, b, c, f=_UNARY[n]: f(a) for n in UNARY]
    binary = dict(_BINARY)
    binary.update({"plus": jnp.add, "times": jnp.multiply, "max": jnp.maximum,
                   "min": jnp.minimum})
    fns += [lambda a, b, c, f=binary[n]: f(a, b) for n in BINARY]
    fns += [lambda a, b, c, f=_RELATIONAL[n]: boolean(f(a, b)) for n in RELATIONAL]
    fns += [lambda a, b, c: boolean(_truth(a) & _truth(b)),
            lambda a, b, c: boolean(_truth(a) | _truth(b)),
            lambda a, b, c: boolean(_truth(a) ^ _truth(b)),
            lambda a, b, c: boolean(~_truth(a)),
            lambda a, b, c: jnp.where(_truth(a), b, c)]
    del _number
    return fns


def interpret(registers, instructions, length):
    """Run a tape: the register file after its first ``length`` instructions."""
    import jax
    import jax.numpy as jnp

    branches = _branches()

    def step(k, regs):
        op, destination, a, b, c = (instructions[k, i] for i in range(5))
        value = jax.lax.switch(op, branches, regs[a], regs[b], regs[c])
        return regs.at[destination].set(jnp.where(k < length, value, regs[destination]))

    return jax.lax.fori_loop(0, instructions.shape[0], step, registers)


def _pad(tapes: list[Tape]):
    n_regs = max(t.registers.size for t in tapes) + 1  # the last register: a dummy
    n_instr = max(1, max(t.instructions.shape[0] for t in tapes))
    n_states = max(1, max(t.state_registers.size for t in tapes))
    registers = np.zeros((len(tapes), n_regs))
    instructions = np.zeros((len(tapes), n_instr, 5), dtype=np.int32)
    states = np.full((len(tapes), n_states), n_regs - 1, dtype=np.int32)
    rates = np.full((len(tapes), n_states), n_regs - 1, dtype=np.int32)
    for k, t in enumerate(tapes):
        registers[k, :t.registers.size] = t.registers
        instructions[k, :t.instructions.shape[0]] = t.instructions
        states[k, :t.state_registers.size] = t.state_registers
        rates[k, :t.rate_registers.size] = t.rate_registers
    lengths = np.array([t.instructions.shape[0] for t in tapes], dtype=np.int32)
    times = np.array([t.time_register for t in tapes], dtype=np.int32)
    return registers, instructions, states, rates, lengths, times, n_states


def run_tapes(tapes: list[Tape], y0s: list[np.ndarray], times: list[np.ndarray],
              solver: str = "Tsit5", rtol: float = 1e-10, atol: float = 1e-13,
              max_steps: int = 200_000):
    """Solve every tape's model from its initial state over its own save times, all in one
    compiled, vmapped program. Returns, per model, the register file at each save time (every
    symbol's value: ``Tape.index``), whether the solve succeeded, and the tape's right-hand
    side at the initial state (for the check against the organ)."""
    import diffrax
    import jax
    import jax.numpy as jnp

    registers, instructions, states, rates, lengths, time_regs, n_states = _pad(tapes)
    n_save = max(t.size for t in times)
    ts = np.stack([np.concatenate([t, np.full(n_save - t.size, t[-1])]) for t in times])
    y0 = np.zeros((len(tapes), n_states))
    for k, y in enumerate(y0s):
        y0[k, :y.size] = y
    method = {"Tsit5": diffrax.Tsit5(), "Kvaerno5": diffrax.Kvaerno5()}[solver]

    def one(regs0, instr, state_idx, rate_idx, length, time_reg, y_start, save_ts):
        def full(t, y):
            regs = regs0.at[state_idx].set(y).at[time_reg].set(t)
            return interpret(regs, instr, length)

        def rhs(t, y, args):
            return full(t, y)[rate_idx]

        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(rhs), method, 0.0, save_ts[-1], None, y_start,
            saveat=diffrax.SaveAt(ts=save_ts),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=max_steps, throw=False)
        ok = solution.result == diffrax.RESULTS.successful
        values = jax.vmap(full)(save_ts, solution.ys)
        return values, ok, rhs(0.0, y_start, None)

    run = jax.jit(jax.vmap(one))
    values, ok, initial_rates = run(
        jnp.asarray(registers), jnp.asarray(instructions), jnp.asarray(states),
        jnp.asarray(rates), jnp.asarray(lengths), jnp.asarray(time_regs), jnp.asarray(y0),
        jnp.asarray(ts))
    values, ok, initial_rates = np.asarray(values), np.asarray(ok), np.asarray(initial_rates)
    return ([values[k, :times[k].size] for k in range(len(tapes))], list(ok),
            [initial_rates[k, :tapes[k].state_registers.size] for k in range(len(tapes))])
