"""Step 3 of the pipeline: resolve every name tagged code uses, collect parameters and
requirements, and report findings that name their cell, line and fix."""

from __future__ import annotations

import ast
import bisect
import re
from dataclasses import dataclass, field, replace

from nb2prod.analysis.cells import prepare_cell_cached
from nb2prod.analysis.effects import Effect
from nb2prod.analysis.identifiers import distribution_name, module_name, package_name
from nb2prod.analysis.magics import clean_cell
from nb2prod.analysis.names import BUILTINS, CellNames, ImportBinding, analyse_names
from nb2prod.analysis.parameters import Parameter, ParameterError, parse_parameters
from nb2prod.analysis.picklable import unloadable_model_findings
from nb2prod.analysis.requirements import Requirement, infer_requirements
from nb2prod.analysis.shadowing import shadowing_findings
from nb2prod.config import Config
from nb2prod.errors import Finding
from nb2prod.notebook import Notebook
from nb2prod.roles import RoledCell

# Which roles' cells may bind the names that a cell of a given role uses.
ACCEPTS: dict[str, frozenset[str]] = {
    "export": frozenset({"export"}),
    "train": frozenset({"export", "parameters", "train"}),
    "metrics": frozenset({"export", "parameters", "train", "metrics"}),
    "predict": frozenset({"export", "predict"}),
    "explain": frozenset({"export", "explain"}),
    "test": frozenset({"export", "parameters", "train", "metrics", "predict", "explain", "test"}),
}
ORDERED_ROLES = frozenset({"parameters", "train", "metrics", "test"})  # must come before their use
JOB_ROLES = frozenset({"parameters", "train", "metrics"})
PREDICT_MODULE_NAMES = frozenset({"load_model", "main"})


@dataclass(frozen=True)
class CodeCell:
    roled: RoledCell
    code: str  # cleaned Python, line numbers as in the cell; hoisted imports blanked
    names: CellNames
    has_test_functions: bool = False
    module_code: str = ""  # `code` without statements that only display a value (for .py files)
    hoisted: tuple[tuple[int, str], ...] = ()  # (line, text) of import lines moved out of `code`
    kept_lines: frozenset[int] = frozenset()  # hoistable import lines kept in place (see _keep_imports_in_place)
    effects: tuple[Effect, ...] = ()  # untagged cells: what they do to names they did not bind

    @property
    def hoisted_lines(self) -> frozenset[int]:
        """Lines of top-level imports moved into the generated import block."""
        return self.names.hoistable_lines - self.kept_lines

    @property
    def index(self) -> int:
        return self.roled.cell.index

    @property
    def id(self) -> str:
        return self.roled.cell.id

    @property
    def roles(self) -> frozenset[str]:
        return self.roled.roles


@dataclass
class Needs:
    """What one generated module must import to run its cells."""

    imports: set[str] = field(default_factory=set)  # import statements
    package: set[tuple[str, str]] = field(default_factory=set)  # (export module, name)

    def sorted_imports(self) -> tuple[str, ...]:
        return tuple(sorted(self.imports, key=_import_sort_key))

    def sorted_package(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        by_module: dict[str, set[str]] = {}
        for module, name in self.package:
            by_module.setdefault(module, set()).add(name)
        return tuple((m, tuple(sorted(names))) for m, names in sorted(by_module.items()))


@dataclass(frozen=True)
class ExportModule:
    name: str
    cells: tuple[CodeCell, ...]
    public: tuple[str, ...]  # goes into __all__
    needs: Needs


@dataclass(frozen=True)
class Analysis:
    notebook: Notebook
    config: Config
    dist: str
    package: str
    modules: tuple[ExportModule, ...]
    parameters: tuple[Parameter, ...]
    job_cells: tuple[CodeCell, ...]  # train and metrics cells, in notebook order
    job_needs: Needs
    predict_cells: tuple[CodeCell, ...]
    predict_needs: Needs
    test_cells: tuple[CodeCell, ...]
    test_needs: Needs
    test_uses_job: dict[int, tuple[str, ...]]  # test cell index -> names taken from the job's namespace
    example_inputs: str | None  # expression over the job namespace whose rows feed predict
    example_names: tuple[str, ...]  # names the expression takes from the job namespace
    fit_inputs: str | None  # first argument of the model's fit(...) call
    requirements: tuple[Requirement, ...]
    findings: tuple[Finding, ...]
    all_cells: tuple[RoledCell, ...]
    uses: dict[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    job_bound: frozenset[str] = frozenset()  # names the job's cells and parameters bind (locals of `run`)
    explain_cells: tuple[CodeCell, ...] = ()
    explain_needs: Needs = field(default_factory=Needs)
    # without an explain cell: the expression of predict's model call argument when predict builds the
    # model's features through exported code (`build_features(pd.DataFrame(inputs))`), and predict's
    # input parameter it reads; the default explanation explains those features
    explain_features: str | None = None
    explain_parameter: str = "inputs"

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def has_job(self) -> bool:
        return bool(self.job_cells)

    @property
    def metrics_bound(self) -> bool:
        return any("metrics" in c.names.binds for c in self.job_cells)


def analyse(
    notebook: Notebook, cells: tuple[RoledCell, ...], config: Config, role_notes: tuple[Finding, ...] = ()
) -> Analysis:
    return _Analyser(notebook, cells, config).run(role_notes)


def _import_sort_key(statement: str) -> tuple[int, str]:
    if statement.startswith("from __future__"):
        return (0, statement)
    return (1 if statement.startswith("import ") else 2, statement.lower())


class _Analyser:
    def __init__(self, notebook: Notebook, cells: tuple[RoledCell, ...], config: Config):
        self.notebook = notebook
        self.cells = cells
        self.config = config
        self.findings: list[Finding] = list(notebook.notes)
        self.code_cells: dict[int, CodeCell] = {}
        self.untagged: dict[int, CodeCell] | None = None
        self.installs: list[tuple[str, int, int]] = []
        self.carried: set[tuple[int, str]] = set()
        self.binder_index: dict[str, list[tuple[CodeCell, ImportBinding | None]]] | None = None
        self.untagged_cache: dict[int, CodeCell | None] = {}
        self.broken: list[RoledCell] = []  # tagged cells that could not be analysed (syntax errors)
        self.reported_changes: set[tuple[int, str]] = set()
        self.word_index: tuple[list[int], list[frozenset[str]]] | None = None

    # -- findings --------------------------------------------------------------------------
    def error(
        self,
        code: str,
        message: str,
        cell: RoledCell | None = None,
        line: int | None = None,
        fix: str | None = None,
        related: RoledCell | None = None,
        role: str | None = None,
    ) -> None:
        location = (
            self.notebook.location(cell.cell, role or cell.primary_role, line) if cell else self.notebook.location()
        )
        related_location = self.notebook.location(related.cell, related.primary_role) if related else None
        self.findings.append(Finding("error", code, message, location, fix, related_location))

    def note(self, code: str, message: str, cell: RoledCell | None = None, line: int | None = None) -> None:
        location = self.notebook.location(cell.cell, cell.primary_role, line) if cell else self.notebook.location()
        self.findings.append(Finding("note", code, message, location))

    # -- steps -----------------------------------------------------------------------------
    def run(self, role_notes: tuple[Finding, ...]) -> Analysis:
        self.findings.extend(role_notes)
        dist = distribution_name(self.config.name or self.notebook.path.stem)
        package = package_name(dist)
        self.findings.extend(shadowing_findings(self.notebook, dist, package, bool(self.config.name)))
        tagged = [c for c in self.cells if c.cell.cell_type == "code" and c.roles and "skip" not in c.roles]
        for roled in tagged:
            code_cell = self._prepare(roled, tagged_cell=True)
            if code_cell is not None:
                self.code_cells[roled.index] = code_cell
            else:
                self.broken.append(roled)
        self._keep_imports_in_place()
        if not tagged:
            self.error(
                "no-tagged-cells",
                "no cell has an nb2prod role, so there is nothing to build; tag cells `export`, `train`, `predict` (cell metadata tags or a `#| export` line)",
            )
        parameters = self._parameters()
        for name in sorted(set(self.config.sweep or {}) - {p.name for p in parameters}):
            self.error(
                "bad-sweep",
                f"the sweep grid in the configuration names {name!r}, which is not a parameter",
                fix="Use names from the parameters cell.",
            )
        modules_cells = self._module_cells()
        job_cells = tuple(c for c in self.code_cells.values() if c.roles & {"train", "metrics"})
        job_bound = frozenset(
            {n for c in job_cells for n in c.names.binds}
            | {b.name for c in job_cells for b in c.names.imports if b.line in c.kept_lines}
            | {p.name for p in parameters}
        )
        predict_cells = tuple(c for c in self.code_cells.values() if "predict" in c.roles)
        explain_cells = tuple(c for c in self.code_cells.values() if "explain" in c.roles)
        test_cells = tuple(c for c in self.code_cells.values() if "test" in c.roles)
        job_needs, predict_needs, test_needs, explain_needs = Needs(), Needs(), Needs(), Needs()
        module_needs = {name: Needs() for name in modules_cells}
        test_uses_job: dict[int, tuple[str, ...]] = {}
        uses_map: dict[int, tuple[tuple[str, int], ...]] = {}
        for code_cell in self.code_cells.values():
            uses_map[code_cell.index] = code_cell.names.uses
            for role in sorted(code_cell.roles & set(ACCEPTS)):
                if role == "export":
                    if (code_cell.roled.module or "core") not in module_needs:
                        continue  # an invalid module name, already reported
                    needs = module_needs[code_cell.roled.module or "core"]
                elif role in ("train", "metrics"):
                    needs = job_needs
                elif role == "predict":
                    needs = predict_needs
                elif role == "explain":
                    needs = explain_needs
                else:
                    needs = test_needs
                from_job = self._resolve(code_cell, role, needs)
                if role == "test" and from_job:
                    if code_cell.has_test_functions:
                        name = from_job[0]
                        self.error(
                            "test-function-uses-job",
                            f"the test function uses {name!r}, a variable of the training job; `def test_*` functions see only exported code, so use plain `assert`s in a test cell to check training results",
                            code_cell.roled,
                            self._first_line(code_cell, name),
                            role="test",
                        )
                    test_uses_job[code_cell.index] = tuple(sorted(from_job))
        modules = self._modules(modules_cells, module_needs, package)
        self._check_function_scoping(test_cells)
        self._check_exported_globals(modules, job_cells)
        self._check_model_and_predict(job_cells, predict_cells)
        self._check_explain(explain_cells)
        self.findings.extend(unloadable_model_findings(self.notebook, job_cells, self.config.model_variable))
        example_inputs, fit_inputs, example_names = (
            self._example_inputs(job_cells, test_cells, modules, test_needs) if job_cells else (None, None, ())
        )
        requirements = self._requirements(modules, job_needs, predict_needs, test_needs, explain_needs, package)
        explain_features, explain_parameter = (
            _predict_features(predict_cells, modules) if not explain_cells else (None, "inputs")
        )
        return Analysis(
            self.notebook,
            self.config,
            dist,
            package,
            modules,
            parameters,
            job_cells,
            job_needs,
            predict_cells,
            predict_needs,
            test_cells,
            test_needs,
            test_uses_job,
            example_inputs,
            example_names,
            fit_inputs,
            requirements,
            tuple(self.findings),
            self.cells,
            uses_map,
            job_bound,
            explain_cells,
            explain_needs,
            explain_features,
            explain_parameter,
        )

    def _prepare(self, roled: RoledCell, tagged_cell: bool) -> CodeCell | None:
        prepared = prepare_cell_cached(roled.code, roled.roles, tagged_cell)
        if tagged_cell:
            for event in prepared.events:
                finding = Finding(
                    event.severity, event.code, event.message, roled.location(self.notebook, event.line), event.fix
                )
                self.findings.append(finding)
            for spec, line in prepared.installs:
                problem = _unpinnable(spec)
                if problem is None:
                    self.installs.append((spec, roled.index, line))
                elif problem:
                    self.note(
                        "install-not-pinned",
                        f"`{spec}` {problem}, so it is not added to the requirements; list what it provides in `requirements` ([tool.nb2prod])",
                        roled,
                        line,
                    )
        if prepared.code is None or prepared.names is None:
            return None
        return CodeCell(
            roled,
            prepared.code,
            prepared.names,
            prepared.has_test_functions,
            prepared.module_code or prepared.code,
            prepared.hoisted,
            effects=prepared.effects,
        )

    def _untagged(self) -> dict[int, CodeCell]:
        """Untagged cells are analysed only when tagged code needs a name it can't find."""
        if self.untagged is None:
            self.untagged = {}
            for roled in self.cells:
                prepared = self._untagged_cell(roled) if not roled.roles else None
                if prepared is not None:
                    self.untagged[roled.index] = prepared
        return self.untagged

    def _untagged_cell(self, roled: RoledCell) -> CodeCell | None:
        """An untagged (or `skip`) code cell, analysed once; None for other cells and broken ones."""
        if roled.cell.cell_type != "code" or (roled.roles and "skip" not in roled.roles):
            return None
        if roled.index not in self.untagged_cache:
            self.untagged_cache[roled.index] = self._prepare(roled, tagged_cell=False)
        return self.untagged_cache[roled.index]

    def _parameters(self) -> tuple[Parameter, ...]:
        found: dict[str, Parameter] = {}
        for code_cell in self.code_cells.values():
            if "parameters" not in code_cell.roles:
                continue
            try:
                for parameter in parse_parameters(code_cell.roled.code, code_cell.index):
                    if parameter.name in found:
                        self.note(
                            "parameter-repeated",
                            f"parameter {parameter.name!r} is assigned again; the later value ({parameter.default!r}) is its default",
                            code_cell.roled,
                            parameter.line,
                        )
                    found[parameter.name] = parameter
            except ParameterError as exc:
                self.error("bad-parameter", exc.message, code_cell.roled, exc.line)
            except SyntaxError:
                pass  # reported by _prepare
        return tuple(found.values())

    def _module_cells(self) -> dict[str, list[CodeCell]]:
        modules: dict[str, list[CodeCell]] = {}
        for code_cell in self.code_cells.values():
            if "export" not in code_cell.roles:
                continue
            raw = code_cell.roled.module or "core"
            name, problem = module_name(raw)
            if name is None:
                self.error(
                    "bad-module-name",
                    f"cannot export into {raw!r}: {problem}",
                    code_cell.roled,
                    fix="Use `export: NAME` with a lower-case Python identifier.",
                )
                continue
            if name != raw:
                self.note("module-renamed", f"export target {raw!r} becomes module {name!r}", code_cell.roled)
            object.__setattr__(code_cell.roled, "module", name)
            modules.setdefault(name, []).append(code_cell)
        return modules

    def _keep_imports_in_place(self) -> None:
        """The job's cells share one namespace (the body of `run`, or the job notebook's globals). An
        import that job code binds otherwise too (`from sklearn import metrics` in one cell,
        `metrics = {...}` in another) stays in its cell instead of moving to the top, so the name
        holds what it held at each moment in the notebook."""
        job = [c for c in self.code_cells.values() if c.roles & {"train", "metrics"}]
        assigned = {n for c in job for n in c.names.binds}
        statements: dict[str, set[str]] = {}
        for code_cell in job:
            for binding in code_cell.names.imports:
                if binding.line in code_cell.hoisted_lines:
                    statements.setdefault(binding.name, set()).add(binding.statement)
        for code_cell in job:
            keep = {
                b.line
                for b in code_cell.names.imports
                if b.name != "*"
                and b.line in code_cell.hoisted_lines
                and (b.name in assigned or len(statements.get(b.name, ())) > 1)
            }
            if keep:
                self.code_cells[code_cell.index] = _restore_imports(code_cell, keep)

    # -- names -----------------------------------------------------------------------------
    def _binders(self, name: str) -> list[tuple[CodeCell, ImportBinding | None]]:
        if self.binder_index is None:
            index: dict[str, list[tuple[CodeCell, ImportBinding | None]]] = {}
            for code_cell in self.code_cells.values():
                for bound in code_cell.names.binds:
                    index.setdefault(bound, []).append((code_cell, None))
                for binding in code_cell.names.imports:
                    index.setdefault(binding.name, []).append((code_cell, binding))
            self.binder_index = index
        return self.binder_index.get(name, [])

    def _resolve(self, user: CodeCell, role: str, needs: Needs) -> list[str]:
        """Resolve the free names of `user` in its `role`; return names taken from the job namespace."""
        accepted = ACCEPTS[role]
        from_job: list[str] = []
        for binding in user.names.imports:  # every one: a cell may hold several star imports
            if binding.line in user.hoisted_lines:
                needs.imports.add(binding.statement)
        for name, line in user.names.uses:
            candidates: list[tuple[CodeCell, ImportBinding | None, frozenset[str]]] = []
            for binder, binder_import in self._binders(name):
                roles = binder.roles & accepted
                if not roles:
                    continue
                if roles <= ORDERED_ROLES and binder.index > user.index:
                    continue
                if binder.index == user.index and binder_import is None:
                    continue  # read before the cell binds it: the value comes from before the cell
                candidates.append((binder, binder_import, roles))
            if candidates:
                candidates.sort(
                    key=lambda c: (c[0].index > user.index, -c[0].index if c[0].index <= user.index else c[0].index)
                )
                binder, chosen, roles = candidates[0]
                self._check_untagged_changes(user, role, name, binder, roles)
                self._check_export_between_job_bindings(user, role, name, binder, roles)
                if chosen is not None:
                    same_scope = role in JOB_ROLES and bool(binder.roles & JOB_ROLES)
                    if not (same_scope and chosen.line not in binder.hoisted_lines):
                        needs.imports.add(chosen.statement)
                elif "export" in roles and not (role == "export" and binder.roled.module == user.roled.module):
                    needs.package.add((binder.roled.module or "core", name))
                elif role == "test" and roles & JOB_ROLES and binder.index != user.index:
                    from_job.append(name)
                continue
            stars = self._star_imports(user, accepted, name)
            if stars:
                needs.imports.update(stars)  # the name may come from any of them
                continue
            self._unresolved(user, role, name, line, needs)
        return from_job

    def _star_imports(self, user: CodeCell, accepted: frozenset[str], name: str) -> list[str]:
        """`from x import *` statements, of cells whose names `user` can see (run before it, or
        exported), that may provide `name`. None when a cell binds `name` otherwise (that is where it
        comes from in the notebook), nor from a standard-library module that does not export it."""
        if self._binders(name) or any(name in c.names.binds for c in self._untagged().values()):
            return []
        found: list[str] = []
        for code_cell in self.code_cells.values():
            roles = code_cell.roles & accepted
            if not roles or (roles <= ORDERED_ROLES and code_cell.index > user.index):
                continue
            found.extend(
                b.statement
                for b in code_cell.names.imports
                if b.name == "*" and _star_may_provide(b.module, b.level, name)
            )
        return found

    # -- untagged cells that change tagged names -------------------------------------------
    def _check_untagged_changes(
        self, user: CodeCell, role: str, name: str, binder: CodeCell, roles: frozenset[str]
    ) -> None:
        """Untagged and `skip` cells that run, in the notebook, after the cell binding `name` and before
        `user`: the package runs without them, so a change they make to `name` is a change of meaning."""
        if binder.index >= user.index:
            return
        immutable = _bound_to_immutable(binder.code, name)
        # `model = pipeline` in the binding cell: a change to `pipeline` is a change to `model`
        for target in (name, *([] if immutable else _aliased(binder.code, name))):
            for roled in self._cells_mentioning(target, binder.index, user.index):
                other = self._untagged_cell(roled)
                if other is None:
                    continue
                for effect in other.effects:
                    if effect.name != target or (roled.index, name) in self.reported_changes:
                        continue
                    rebinds = effect.action.startswith(("assigns", "defines", "imports", "deletes it"))
                    if target != name and rebinds:
                        continue  # rebinding the other name leaves the object `name` holds alone
                    if immutable and not (rebinds or effect.action.startswith("changes it")):
                        continue  # a number or a string cannot be changed in place
                    self.reported_changes.add((roled.index, name))
                    self._report_change(roled, effect, binder, roles, user, role, name)
                    break

    def _check_export_between_job_bindings(
        self, user: CodeCell, role: str, name: str, binder: CodeCell, roles: frozenset[str]
    ) -> None:
        """A job cell that reads `name` exported by a cell that comes after another job cell binding
        `name`: the job imports the exported value before its cells run, so that earlier job cell
        would overwrite it, unlike in the notebook."""
        if role not in JOB_ROLES or "export" not in roles or roles & JOB_ROLES:
            return
        earlier = [
            c
            for c in self.code_cells.values()
            if c.roles & JOB_ROLES and c.index < binder.index and name in c.names.binds
        ]
        if not earlier or (binder.index, name) in self.reported_changes:
            return
        self.reported_changes.add((binder.index, name))
        first = earlier[0]
        self.error(
            "export-rebinds-job-name",
            f"{name!r} is assigned in {first.roled.primary_role} cell {first.index + 1} (id {first.id}) and then again in export cell {binder.index + 1} (id {binder.id}); the job imports exported names before its cells run, so it cannot follow that order",
            user.roled,
            self._first_line(user, name),
            fix=f"Use different names in cells {first.index + 1} and {binder.index + 1}.",
            related=binder.roled,
            role=role,
        )

    def _cells_mentioning(self, name: str, after: int, before: int) -> list[RoledCell]:
        """Untagged and `skip` code cells strictly between two cells whose source mentions `name`."""
        if self.word_index is None:
            indices, words = [], []
            for roled in self.cells:
                if roled.cell.cell_type == "code" and (not roled.roles or "skip" in roled.roles):
                    indices.append(roled.index)
                    words.append(frozenset(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", roled.code)))
            self.word_index = (indices, words)
        indices, words = self.word_index
        start, end = bisect.bisect_right(indices, after), bisect.bisect_left(indices, before)
        by_index = {c.index: c for c in self.cells}
        return [by_index[indices[i]] for i in range(start, end) if name in words[i]]

    def _report_change(
        self,
        cell: RoledCell,
        effect: Effect,
        binder: CodeCell,
        roles: frozenset[str],
        user: CodeCell,
        role: str,
        name: str,
    ) -> None:
        binder_role = next(
            r for r in ("parameters", "export", "train", "metrics", "predict", "explain", "test") if r in roles
        )
        tag = "train" if binder_role == "parameters" else binder_role
        skipped = "skip" in cell.roles
        kind = "cell, tagged `skip`," if skipped else "untagged cell"
        through = f", the object {name!r} holds," if effect.name != name else ""
        between = (
            f"{through} between {binder_role} cell {binder.index + 1} (id {binder.id}), which binds it, "
            f"and {role} cell {user.index + 1} (id {user.id}), which uses it"
        )
        number = cell.index + 1
        location = self.notebook.location(cell.cell, "skip" if skipped else None, effect.line)
        related = self.notebook.location(user.roled.cell, role)
        retag = (
            f"remove the `skip` tag of cell {number} and tag it `{tag}`" if skipped else f"tag cell {number} `{tag}`"
        )
        if effect.severity == "error":
            message = (
                f"this {kind} changes {effect.name!r} (`{effect.statement}` {effect.action}){between}; "
                f"the package runs without cell {number}, so it would not compute what the notebook does"
            )
            fix = f"{retag[:1].upper()}{retag[1:]}, or move the statement into cell {binder.index + 1}."
            self.findings.append(Finding("error", "untagged-mutation", message, location, fix, related))
        else:
            message = (
                f"this {kind} may change {effect.name!r} (`{effect.statement}` {effect.action}){between}; "
                f"the package runs without cell {number}"
            )
            fix = f"If it changes {effect.name!r}, {retag}; if it only reads it, nothing needs to change."
            self.findings.append(Finding("note", "untagged-maybe-mutation", message, location, fix, related))

    def _unresolved(self, user: CodeCell, role: str, name: str, line: int, needs: Needs) -> None:
        untagged = self._untagged()
        for index in sorted(untagged, key=lambda i: (i > user.index, abs(i - user.index))):
            other = untagged[index]
            for binding in other.names.imports:
                if binding.name == name:
                    needs.imports.add(binding.statement)
                    if (index, binding.statement) not in self.carried:
                        self.carried.add((index, binding.statement))
                        self.note(
                            "import-carried",
                            f"`{binding.statement}` comes from untagged cell {index + 1} and is carried into the generated code, which needs {name!r}; tag that cell `export` to make this explicit",
                            user.roled,
                            line,
                        )
                    return
        definers = [c for c in untagged.values() if name in c.names.binds]
        definers.sort(key=lambda c: (c.index > user.index, abs(c.index - user.index)))
        if definers:
            definer = definers[0]
            tag = (
                "export"
                if definer.names.defines_callables or role in ("export", "predict", "explain")
                else ("train" if role in ("train", "metrics", "test") else "export")
            )
            self.error(
                "undefined-name",
                f"{name!r} is defined only in untagged cell {definer.index + 1} (id {definer.id}), which is not exported",
                user.roled,
                line,
                fix=f"Tag cell {definer.index + 1} `{tag}` so the {role} code can use it.",
                related=definer.roled,
                role=role,
            )
            return
        wrong = [b for b, _ in self._binders(name)]
        skipped = [c for c in self.cells if "skip" in c.roles and c.cell.cell_type == "code" and name in _safe_binds(c)]
        if wrong:
            binder = sorted(wrong, key=lambda c: abs(c.index - user.index))[0]
            binder_role = binder.roled.primary_role
            if binder.index > user.index and binder.roles & ORDERED_ROLES:
                detail = f"{name!r} is defined later, in {binder_role} cell {binder.index + 1} (id {binder.id})"
                fix = "Move that cell before this one."
            else:
                detail = f"{name!r} is defined in {binder_role} cell {binder.index + 1} (id {binder.id}), which {role} code cannot see"
                fix = _cross_role_fix(role, binder_role or "")
            self.error("undefined-name", detail, user.roled, line, fix=fix, related=binder.roled, role=role)
        elif skipped:
            definer_cell = skipped[0]
            self.error(
                "undefined-name",
                f"{name!r} is defined only in cell {definer_cell.index + 1} (id {definer_cell.cell.id}), which is tagged `skip`",
                user.roled,
                line,
                fix="Remove its `skip` tag and give it a role.",
                related=definer_cell,
                role=role,
            )
        elif (broken := self._broken_mentioning(name)) is not None:
            if broken.roles:
                return  # the cell's syntax error is reported; fixing it may define the name
            self.error(
                "undefined-name",
                f"{name!r} may be defined in untagged cell {broken.index + 1} (id {broken.cell.id}), which is not valid Python, so nb2prod cannot tell",
                user.roled,
                line,
                fix=f"Fix the syntax of cell {broken.index + 1}, and tag it if the {role} code needs it.",
                related=broken,
                role=role,
            )
        else:
            self.error(
                "undefined-name",
                f"{name!r} is not defined in any cell",
                user.roled,
                line,
                fix="Define or import it in a tagged cell.",
                role=role,
            )

    def _broken_mentioning(self, name: str) -> RoledCell | None:
        """A cell that could not be analysed (a syntax error) and mentions `name`: tagged ones first."""
        pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])")
        untagged = [
            c
            for c in self.cells
            if c.cell.cell_type == "code" and not c.roles and c.index not in self._untagged() and pattern.search(c.code)
        ]
        for roled in [*self.broken, *untagged]:
            if pattern.search(roled.code):
                return roled
        return None

    def _check_function_scoping(self, test_cells: tuple[CodeCell, ...]) -> None:
        """Plain test cells run inside `test_cell_N()` (the job's cells run at module level, as in the
        notebook). Two things then mean something else than at the notebook's top level: `global
        NAME` in a def (it reaches the module, not the cell's variable) and a class body reading a
        name it also assigns (it skips the function's variables). Both are refused rather than
        computed differently."""
        groups: list[tuple[CodeCell, frozenset[str] | set[str], str]] = [
            (c, c.names.binds, "test") for c in test_cells if not c.has_test_functions
        ]
        for code_cell, bound, role in groups:
            for name, line in code_cell.names.declared_global:
                if name in bound:
                    self.error(
                        "global-in-job",
                        f"a function here declares `global {name}`, but the generated {role} code runs inside a function, where `global` reaches the module and not the {name!r} of the notebook's cells",
                        code_cell.roled,
                        line,
                        fix=f"Pass {name!r} in as an argument and return the new value, or move the function into an export cell.",
                        role=role,
                    )
            for name, line in code_cell.names.class_reads_own:
                if name in bound:
                    self.error(
                        "class-reads-job-name",
                        f"the class body reads {name!r} and also assigns it; the generated {role} code runs inside a function, where such a read skips the {name!r} of the notebook's cells",
                        code_cell.roled,
                        line,
                        fix=f"Give the class attribute another name than {name!r}, or move the class into an export cell.",
                        role=role,
                    )

    def _check_exported_globals(self, modules: tuple[ExportModule, ...], job_cells: tuple[CodeCell, ...]) -> None:
        """An exported function reading a module-level name that job code rebinds: in the notebook the
        function then sees the job's value, in the package it keeps reading its module's own."""
        for module in modules:
            module_bound = {n for c in module.cells for n in c.names.binds}
            for export_cell in module.cells:
                read = export_cell.names.callable_globals & module_bound
                for job_cell in job_cells:
                    for name in sorted(read & job_cell.names.binds):
                        if job_cell.index < export_cell.index:
                            continue
                        self.error(
                            "rebinds-exported-global",
                            f"this cell assigns {name!r}, which code exported from cell {export_cell.index + 1} (id {export_cell.id}) reads as a global: in the notebook that code then sees the new value, in the package it keeps the value of module {module.name!r}",
                            job_cell.roled,
                            self._first_bind_line(job_cell, name),
                            fix=f"Pass {name!r} to the exported function as an argument, or use another name in this cell.",
                            related=export_cell.roled,
                        )

    def _first_bind_line(self, code_cell: CodeCell, name: str) -> int | None:
        for node in ast.walk(ast.parse(code_cell.code)):
            if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, (ast.Store, ast.Del)):
                return node.lineno
        return None

    def _first_line(self, code_cell: CodeCell, name: str) -> int | None:
        return dict(code_cell.names.uses).get(name)

    # -- modules, model, predict -----------------------------------------------------------
    def _modules(
        self, modules_cells: dict[str, list[CodeCell]], module_needs: dict[str, Needs], package: str
    ) -> tuple[ExportModule, ...]:
        modules = []
        for name, cells in modules_cells.items():
            public: set[str] = set()
            for code_cell in cells:
                if not code_cell.roled.internal:
                    public.update(n for n in code_cell.names.binds if not n.startswith("_"))
            modules.append(ExportModule(name, tuple(cells), tuple(sorted(public)), module_needs[name]))
        graph = {m.name: {dep for dep, _ in m.needs.package} for m in modules}
        cycle = _find_cycle(graph)
        if cycle:
            self.error(
                "module-cycle",
                f"export modules {' → '.join(cycle)} import each other in a cycle, which Python cannot load",
                fix="Move the shared code into one module.",
            )
        modules.sort(key=lambda m: (m.name != "core", m.name))
        return tuple(modules)

    def _check_model_and_predict(self, job_cells: tuple[CodeCell, ...], predict_cells: tuple[CodeCell, ...]) -> None:
        variable = self.config.model_variable
        train_cells = [c for c in job_cells if "train" in c.roles]
        broken_roles = {r for c in self.broken for r in c.roles}
        if (
            train_cells
            and not any(variable in c.names.binds for c in train_cells)
            and not any("train" in c.roles and variable in c.code for c in self.broken)
        ):
            self.error(
                "no-model",
                f"no train cell assigns the model variable {variable!r}",
                train_cells[-1].roled,
                fix=f"Assign the fitted model to {variable!r}, or set model_variable in [tool.nb2prod] or metadata.nb2prod.",
                role="train",
            )
        if job_cells and not train_cells and "train" not in broken_roles:
            self.error(
                "no-train", "metrics cells need a train cell that fits the model", job_cells[0].roled, role="metrics"
            )
        if (
            predict_cells
            and not any(_defines_function(c.code, "predict") for c in predict_cells)
            and "predict" not in broken_roles
        ):
            self.error(
                "no-predict-function",
                "the predict cell does not define `predict(model, inputs)`",
                predict_cells[0].roled,
                role="predict",
            )
        for code_cell in predict_cells:
            for node in ast.parse(code_cell.code).body:
                if (
                    isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and node.name == "predict"
                    and not _takes_two_arguments(node)
                ):
                    self.error(
                        "predict-signature",
                        "`predict` must take two arguments, `predict(model, inputs)`",
                        code_cell.roled,
                        node.lineno,
                        role="predict",
                    )
        parameter_cells = [c for c in self.code_cells.values() if "parameters" in c.roles]
        if parameter_cells and not job_cells and not broken_roles & {"train", "metrics"}:
            self.note(
                "parameters-unused",
                "the notebook has parameters but no train cell, so no training job is generated and the parameters are unused",
                parameter_cells[0].roled,
            )
        for code_cell in predict_cells:
            for name in sorted(code_cell.names.binds & PREDICT_MODULE_NAMES):
                self.error(
                    "reserved-name",
                    f"the predict cell defines {name!r}, which the generated predict module defines itself",
                    code_cell.roled,
                    fix=f"Rename {name!r}.",
                    role="predict",
                )
        if (
            job_cells
            and any("metrics" in c.roles for c in job_cells)
            and not any("metrics" in c.names.binds for c in job_cells)
            and "metrics" not in broken_roles
        ):
            self.note(
                "no-metrics-dict",
                "no metrics cell assigns a dict named `metrics`, so runs record no metrics",
                [c for c in job_cells if "metrics" in c.roles][0].roled,
            )

    def _check_explain(self, explain_cells: tuple[CodeCell, ...]) -> None:
        """An explain cell defines `explain(model, inputs)`, as a predict cell defines `predict`."""
        broken_roles = {r for c in self.broken for r in c.roles}
        if (
            explain_cells
            and not any(_defines_function(c.code, "explain") for c in explain_cells)
            and "explain" not in broken_roles
        ):
            self.error(
                "no-explain-function",
                "the explain cell does not define `explain(model, inputs)`",
                explain_cells[0].roled,
                fix="Define `def explain(model, inputs):` returning one explanation per input row.",
                role="explain",
            )
        for code_cell in explain_cells:
            for node in ast.parse(code_cell.code).body:
                if (
                    isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and node.name == "explain"
                    and not _takes_two_arguments(node)
                ):
                    self.error(
                        "explain-signature",
                        "`explain` must take two arguments, `explain(model, inputs)`",
                        code_cell.roled,
                        node.lineno,
                        role="explain",
                    )

    def _example_inputs(
        self,
        job_cells: tuple[CodeCell, ...],
        test_cells: tuple[CodeCell, ...],
        modules: tuple[ExportModule, ...],
        test_needs: Needs,
    ) -> tuple[str | None, str | None, tuple[str, ...]]:
        """Find what to feed predict in the contract test: config `example_inputs`, else the argument
        of a `predict(model, X)` call anywhere in the notebook, else (no predict cell) what the model
        was fitted on."""
        job_names: set[str] = set()
        for code_cell in job_cells:
            job_names |= code_cell.names.binds
        exported = {name: m.name for m in modules for name in m.public}
        fit_inputs = None
        for code_cell in job_cells:
            for node in ast.walk(ast.parse(code_cell.code)):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "fit"
                    and node.args
                ):
                    first = node.args[0]
                    if isinstance(first, ast.Name) and first.id in job_names and fit_inputs is None:
                        fit_inputs = first.id
        candidates: list[str] = []
        if self.config.example_inputs:
            candidates.append(self.config.example_inputs)
        # Untagged cells are read only if they mention predict (analysing a cell with magics costs an IPython import).
        mentioning = [self._untagged_cell(c) for c in self.cells if not c.roles and "predict" in c.code]
        later = [*job_cells, *test_cells, *[c for c in mentioning if c is not None]]
        for code_cell in later:
            for node in ast.walk(ast.parse(code_cell.code)):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "predict"
                    and len(node.args) == 2
                ):
                    candidates.append(ast.unparse(node.args[1]))
        if fit_inputs is not None and not self.code_cells_with("predict"):
            candidates.append(fit_inputs)
        for expression in candidates:
            try:
                tree = ast.parse(expression, mode="eval")
            except SyntaxError:
                self.error("bad-example-inputs", f"example_inputs {expression!r} is not a Python expression")
                return None, fit_inputs, ()
            free = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            if free <= job_names | set(exported) | BUILTINS:
                for name in free - job_names:
                    if name in exported:
                        test_needs.package.add((exported[name], name))
                return expression, fit_inputs, tuple(sorted(free & job_names))
        if self.code_cells_with("predict") or fit_inputs:
            self.note(
                "no-example-inputs",
                "no example input for predict was found, so the predict contract test is not generated; call `predict(model, X)` in a cell or set example_inputs",
            )
        return None, fit_inputs, ()

    def code_cells_with(self, role: str) -> list[CodeCell]:
        return [c for c in self.code_cells.values() if role in c.roles]

    # -- requirements ----------------------------------------------------------------------
    def _requirements(self, modules: tuple[ExportModule, ...], *needs_list: Needs | str) -> tuple[Requirement, ...]:
        package = str(needs_list[-1])
        all_needs = [n for n in needs_list[:-1] if isinstance(n, Needs)] + [m.needs for m in modules]
        statements: dict[str, None] = {}
        for needs in all_needs:
            for statement in needs.sorted_imports():
                statements[statement] = None
        roots: list[tuple[str, int, int]] = []
        origin = self._import_origins()
        for statement in statements:
            module = _statement_module(statement)
            if module:
                cell_index, line = origin.get(statement, (0, 1))
                roots.append((module.split(".")[0], cell_index, line))
        for code_cell in self.code_cells.values():
            for binding in code_cell.names.imports:
                if binding.line not in code_cell.hoisted_lines and binding.level == 0 and binding.module:
                    roots.append((binding.module.split(".")[0], code_cell.index, binding.line))
            for binding in code_cell.names.nested_imports:
                if binding.level == 0 and binding.module:
                    roots.append((binding.module.split(".")[0], code_cell.index, binding.line))
        requirements, missing = infer_requirements(roots, self.installs, self.config.requirements, package)
        for item in missing:
            roled = next(c for c in self.cells if c.index == item.cell_index)
            self.error(
                "unknown-import",
                f"no installed distribution provides the module {item.module!r}",
                roled,
                item.line,
                fix="Install it where nb2prod runs, or pin its distribution in `requirements` ([tool.nb2prod]).",
            )
        return requirements

    def _import_origins(self) -> dict[str, tuple[int, int]]:
        origins: dict[str, tuple[int, int]] = {}
        cells = list(self.code_cells.values()) + list((self.untagged or {}).values())
        for code_cell in cells:
            for binding in code_cell.names.imports:
                origins.setdefault(binding.statement, (code_cell.index, binding.line))
        return origins


INSTALLER_PACKAGES = frozenset({"pip", "setuptools", "wheel"})


def _unpinnable(spec: str) -> str | None:
    """None for a requirement to pin, "" for one to skip silently, else why it can't be pinned."""
    from packaging.requirements import InvalidRequirement, Requirement

    if spec.startswith("-r "):
        return "installs from a requirements file"
    try:
        requirement = Requirement(spec)
    except InvalidRequirement:
        return "is a path or URL, not a package requirement"
    if requirement.url:
        return "installs from a URL"
    if requirement.name.lower() in INSTALLER_PACKAGES:
        return ""
    return None


def _statement_module(statement: str) -> str:
    words = statement.split()
    if words[0] == "import":
        return words[1]
    module = words[1]
    return "" if module.startswith(".") else module


def _bound_to_immutable(code: str, name: str) -> bool:
    """Whether the last top-level assignment of `name` in `code` gives it a number, string, bool or None."""
    value = None
    for node in ast.parse(code).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                value = node.value
    return isinstance(value, ast.Constant)


def _aliased(code: str, name: str) -> list[str]:
    """Names whose object `name` is bound to at the top level of `code` (`name = other`, `name = other.x`)."""
    found = []
    for node in ast.parse(code).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = node.value
            while isinstance(value, (ast.Attribute, ast.Subscript)):
                value = value.value
            if isinstance(value, ast.Name) and value.id != name:
                found.append(value.id)
    return found


def _star_may_provide(module: str, level: int, name: str) -> bool:
    """Whether `from module import *` may bind `name`: checked for standard-library modules (importing
    them has no side effects), assumed for any other."""
    import importlib
    import sys

    if level or module.split(".")[0] not in sys.stdlib_module_names or module in ("antigravity", "this"):
        return True  # (those two act when imported)
    try:
        imported = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - whatever stops the import, the name may still come from it
        return True
    public = getattr(imported, "__all__", None)
    if public is None:
        public = [n for n in dir(imported) if not n.startswith("_")]
    return name in public


def _restore_imports(code_cell: CodeCell, starts: set[int]) -> CodeCell:
    """Put the import statements starting on `starts` back into the cell's code, where they were."""
    firsts = sorted({b.line for b in code_cell.names.imports})
    lines = set()
    for line, _ in code_cell.hoisted:
        statement_start = firsts[bisect.bisect_right(firsts, line) - 1] if firsts and firsts[0] <= line else None
        if statement_start in starts:
            lines.add(line)
    texts = dict(code_cell.hoisted)

    def put_back(code: str) -> str:
        out = code.split("\n")
        for line in lines:
            if 0 < line <= len(out):
                out[line - 1] = texts[line]
        return "\n".join(out)

    return replace(
        code_cell,
        code=put_back(code_cell.code),
        module_code=put_back(code_cell.module_code),
        kept_lines=code_cell.kept_lines | frozenset(lines),
    )


def statement_binds(statement: str) -> str:
    """The one name a one-name import statement binds ("*" for a star import)."""
    words = statement.split()
    if words[-2:-1] == ["as"]:
        return words[-1]
    if words[0] == "import":
        return words[1].split(".")[0]
    return words[-1]


def _safe_binds(roled: RoledCell) -> frozenset[str]:
    try:
        return analyse_names(clean_cell(roled.code).code).binds
    except SyntaxError:
        return frozenset()


def _cross_role_fix(role: str, binder_role: str) -> str:
    if role == "export" and binder_role in JOB_ROLES:
        return "Exported code runs outside the training job: pass the value in as a function argument, or move this code into a train cell."
    if role in ("predict", "explain"):
        return (
            f"{role} sees only exported code and its arguments: export what it needs, or pass it in through the model."
        )
    return f"Tag the defining cell so that {role} code can see it."


MODEL_CALLS = frozenset({"predict", "predict_proba", "decision_function"})


def _predict_features(predict_cells: tuple[CodeCell, ...], modules: tuple[ExportModule, ...]) -> tuple[str | None, str]:
    """What predict hands the model, when it builds the model's features through an exported
    function from its inputs alone: `features = build_features(pd.DataFrame(inputs))` and then
    `model.predict_proba(features)` give `build_features(pd.DataFrame(inputs))`. None otherwise."""
    exported = {name for m in modules for name in m.public}
    for code_cell in predict_cells:
        for node in ast.parse(code_cell.code).body:
            if not (isinstance(node, ast.FunctionDef) and node.name == "predict" and len(node.args.args) >= 2):
                continue
            model, inputs = node.args.args[0].arg, node.args.args[1].arg
            assigned: dict[str, ast.expr] = {}
            for statement in ast.walk(node):
                if (
                    isinstance(statement, ast.Assign)
                    and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)
                ):
                    assigned.setdefault(statement.targets[0].id, statement.value)
            for call in ast.walk(node):
                if not (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and isinstance(call.func.value, ast.Name)
                    and call.func.value.id == model
                    and call.func.attr in MODEL_CALLS
                    and len(call.args) == 1
                ):
                    continue
                argument = call.args[0]
                if isinstance(argument, ast.Name) and argument.id in assigned:
                    argument = assigned[argument.id]
                if not (isinstance(argument, ast.Call) and isinstance(argument.func, ast.Name)):
                    continue
                if argument.func.id not in exported:
                    continue
                names = {n.id for n in ast.walk(argument) if isinstance(n, ast.Name)}
                local = {n for n in names if n in assigned or n == model}
                if local or inputs not in names:
                    continue
                return ast.unparse(argument), inputs
    return None, "inputs"


def _takes_two_arguments(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    positional = [*node.args.posonlyargs, *node.args.args]
    required_beyond = len(positional) - len(node.args.defaults)
    return (len(positional) >= 2 or node.args.vararg is not None) and required_beyond <= 2


def _defines_function(code: str, name: str) -> bool:
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in ast.parse(code).body)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None
