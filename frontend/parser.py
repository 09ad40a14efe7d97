"""Parse tile-language source into ``frontend.ast`` nodes with lark (LALR + an indenter)."""
from __future__ import annotations

import functools
import re
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import DedentError, Indenter

from . import ast as A
from .diagnostics import CompileError, Diagnostic, Loc, Source


class _TileIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("frontend").joinpath("tile.lark").read_text()
    return Lark(grammar, parser="lalr", postlex=_TileIndenter(), propagate_positions=True,
                maybe_placeholders=True)


# Friendly names for the terminals lark reports as "expected".
_TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "_NL": "end of line", "_INDENT": "an indented block", "_DEDENT": "end of block",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COLON": "':'",
    "COMMA": "','", "EQUAL": "'='", "AUGOP": "'+='", "COMPOP": "a comparison",
    "ADDOP": "'+' or '-'", "MULOP": "'*' or '/'", "MINUS": "'-'", "KERNEL": "'kernel'",
    "$END": "end of file",
}


def _int(tok) -> int:
    s = str(tok)
    return int(s, 16) if s[:2] in ("0x", "0X") else int(s, 10)


def _tok_loc(tok: Token) -> Loc:
    end = tok.end_column if tok.end_line == tok.line else None
    return Loc(tok.line, tok.column, end)


def _meta_loc(meta) -> Loc:
    if getattr(meta, "empty", True):
        return None
    end = meta.end_column if meta.end_line == meta.line else None
    return Loc(meta.line, meta.column, end)


_BINOP_BY_TREE = {"bor": "|", "bxor": "^", "band": "&"}


@v_args(meta=True)
class _ToAst(Transformer):
    # -- kernels and params
    def start(self, meta, items):
        return A.Module([k for k in items if isinstance(k, A.Kernel)], loc=_meta_loc(meta))

    def kernel(self, meta, items):
        name, params, body = items
        return A.Kernel(str(name), params or [], body, loc=_tok_loc(name))

    def params(self, meta, items):
        return [p for p in items if p is not None]

    def param(self, meta, items):
        name, ptype, default = items
        kind, dtype, dims, dim_locs = ptype
        d = default[0] if default is not None else None
        return A.Param(str(name), kind, dtype, dims, dim_locs, d, loc=_tok_loc(name))

    def tensor_type(self, meta, items):
        dt, *dims = [i for i in items if i is not None]
        return ("tensor", str(dt), [d[0] for d in dims], [d[1] for d in dims])

    def const_type(self, meta, items):
        return ("const", None, [], [])

    def dtype_type(self, meta, items):
        return ("dtype", None, [], [])

    def scalar_type(self, meta, items):
        return ("scalar", str(items[0]), [], [])

    def dim_name(self, meta, items):
        return (str(items[0]), _tok_loc(items[0]))

    def dim_int(self, meta, items):
        return (_int(items[0]), _tok_loc(items[0]))

    def default_int(self, meta, items):
        return (_int(items[0]),)

    def default_neg_int(self, meta, items):
        return (-_int(items[0]),)

    def default_name(self, meta, items):
        return (str(items[0]),)

    # -- statements
    def suite(self, meta, items):
        return [s for s in items if isinstance(s, A.Node)]

    def assign(self, meta, items):
        return A.Assign(str(items[0]), items[1], loc=_tok_loc(items[0]))

    def aug_assign(self, meta, items):
        name, op, value = items
        return A.AugAssign(str(name), str(op)[:-1], value, loc=_tok_loc(name))

    def expr_stmt(self, meta, items):
        return A.ExprStmt(items[0], loc=_meta_loc(meta))

    def pass_stmt(self, meta, items):
        return A.Pass(loc=_meta_loc(meta))

    def for_stmt(self, meta, items):
        var, it, body = items
        return A.For(str(var), it, body, loc=_meta_loc(meta))

    def if_stmt(self, meta, items):
        cond, body, elifs, orelse = items
        # elif chains become nested ifs in the else branch
        tail = orelse or []
        for (c, b, loc) in reversed(elifs):
            tail = [A.If(c, b, tail, loc=loc)]
        return A.If(cond, body, tail, loc=_meta_loc(meta))

    def elifs(self, meta, items):
        return items

    def elif_clause(self, meta, items):
        return (items[0], items[1], _meta_loc(meta))

    def else_clause(self, meta, items):
        return items[0]

    # -- expressions
    def _chain(self, meta, items, op):
        out = items[0]
        for rhs in items[1:]:
            out = A.BinOp(op, out, rhs, loc=out.loc)
        return out

    def or_chain(self, meta, items):
        return self._chain(meta, items, "or")

    def and_chain(self, meta, items):
        return self._chain(meta, items, "and")

    def not_op(self, meta, items):
        return A.UnaryOp("not", items[0], loc=_meta_loc(meta))

    def compare(self, meta, items):
        if len(items) == 1 or items[1] is None:
            return items[0]
        left, op, right = items
        return A.BinOp(str(op), left, right, loc=_tok_loc(op))

    def binop(self, meta, items):
        left, op, right = items
        return A.BinOp(str(op), left, right, loc=_tok_loc(op))

    def bor(self, meta, items):
        return A.BinOp("|", items[0], items[1], loc=_meta_loc(meta))

    def bxor(self, meta, items):
        return A.BinOp("^", items[0], items[1], loc=_meta_loc(meta))

    def band(self, meta, items):
        return A.BinOp("&", items[0], items[1], loc=_meta_loc(meta))

    def unop(self, meta, items):
        return A.UnaryOp(str(items[0]), items[1], loc=_tok_loc(items[0]))

    def neg(self, meta, items):
        return A.UnaryOp("-", items[0], loc=_meta_loc(meta))

    def call(self, meta, items):
        func, args = items
        loc = _meta_loc(meta)
        if not isinstance(func, A.Name):
            raise _SyntaxAt(func.loc or loc, "only named functions can be called")
        pos, kw = [], {}
        for a in args or []:
            if isinstance(a, tuple):
                if a[0] in kw:
                    raise _SyntaxAt(a[2], f"keyword argument '{a[0]}' given twice")
                kw[a[0]] = a[1]
            else:
                if kw:
                    raise _SyntaxAt(a.loc or loc, "positional argument after keyword argument")
                pos.append(a)
        return A.Call(func.id, pos, kw, func_loc=func.loc, loc=func.loc)

    def args(self, meta, items):
        return [a for a in items if a is not None]

    def kwarg(self, meta, items):
        return (str(items[0]), items[1], _tok_loc(items[0]))

    def subscript(self, meta, items):
        value, subs = items
        return A.Subscript(value, subs, loc=_meta_loc(meta))

    def subscripts(self, meta, items):
        return [i for i in items if i is not None]

    def slice(self, meta, items):
        lo, hi = items
        return A.Slice(lo, hi, loc=_meta_loc(meta))

    def tuple_expr(self, meta, items):
        return A.Tuple([i for i in items if i is not None], loc=_meta_loc(meta))

    def name(self, meta, items):
        return A.Name(str(items[0]), loc=_tok_loc(items[0]))

    def int_lit(self, meta, items):
        return A.Int(_int(items[0]), loc=_tok_loc(items[0]))

    def float_lit(self, meta, items):
        return A.Float(float(items[0]), loc=_tok_loc(items[0]))

    def string_lit(self, meta, items):
        return A.Str(str(items[0])[1:-1], loc=_tok_loc(items[0]))

    def true_lit(self, meta, items):
        return A.Bool(True, loc=_meta_loc(meta))

    def false_lit(self, meta, items):
        return A.Bool(False, loc=_meta_loc(meta))

    def none_lit(self, meta, items):
        return A.NoneLit(loc=_meta_loc(meta))


class _SyntaxAt(Exception):
    def __init__(self, loc: Loc, message: str):
        super().__init__(message)
        self.loc, self.message = loc, message


def _terminal_name(name: str) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    try:
        pat = _parser().get_terminal(name).pattern
    except KeyError:
        return name
    return f"'{pat.value}'" if pat.type == "str" else name.lower()


def _describe_expected(expected) -> str:
    names = sorted({_terminal_name(e) for e in expected})
    names = [n for n in names if not n.startswith("__")]
    if not names:
        return ""
    if len(names) > 6:
        names = names[:6] + ["..."]
    return "expected " + ", ".join(names)


def _syntax_diagnostic(src: Source, err: UnexpectedInput) -> Diagnostic:
    if isinstance(err, UnexpectedCharacters):
        ch = src.line(err.line)[err.column - 1: err.column] or "?"
        return Diagnostic(Loc(err.line, err.column), f"unexpected character '{ch}'")
    if isinstance(err, UnexpectedEOF):
        n = max(1, len(src.text.splitlines()))
        return Diagnostic(Loc(n, len(src.line(n)) + 1), "unexpected end of file",
                          _describe_expected(err.expected) or None)
    if isinstance(err, UnexpectedToken):
        tok = err.token
        what = {"_NL": "end of line", "_INDENT": "indentation", "_DEDENT": "end of block",
                "$END": "end of file"}.get(tok.type, f"'{tok}'")
        line = getattr(tok, "line", None) or err.line
        col = getattr(tok, "column", None) or err.column
        if tok.type in ("_INDENT", "_DEDENT", "$END") or line is None or line < 1:
            line, col = err.line if err.line and err.line > 0 else 1, err.column if err.column and err.column > 0 else 1
        hint = None
        if tok.type == "_INDENT":
            hint = "this line is indented more than the block it belongs to"
            line = _next_code_line(src, tok.line)
            text = src.line(line)
            col = len(text) - len(text.lstrip()) + 1
        exp = "" if tok.type == "_INDENT" else _describe_expected(err.expected)
        msg = f"unexpected {what}" + (f"; {exp}" if exp else "")
        return Diagnostic(Loc(line, col, getattr(tok, "end_column", None) if tok.type not in
                              ("_NL", "_INDENT", "_DEDENT", "$END") else None), msg, hint)
    return Diagnostic(Loc(getattr(err, "line", 1) or 1, getattr(err, "column", 1) or 1), "syntax error")


# Limits checked before parsing, each with its own message (deep or long input must end in a
# diagnostic, never in a recursion crash or a long stall).
MAX_SOURCE_BYTES = 1 << 17   # 128 KiB (the whole library is 9 KiB); lark parses ~100 KiB/s here
MAX_LINE = 10_000          # characters on one line
MAX_DEPTH = 64             # nested brackets
MAX_OPERATORS = 256        # operators in one statement (a deep or long expression)
MAX_KERNELS = 256
_OPS = re.compile(r"\*\*|//|<<|>>|<=|>=|==|!=|[-+*/%&|^~<>]|\bnot\b|\band\b|\bor\b")


def _limits(src: Source) -> list[Diagnostic]:
    """Diagnostics for input past the limits above (empty when within them)."""
    out = []
    if len(src.text.encode("utf-8", "replace")) > MAX_SOURCE_BYTES:
        return [Diagnostic(Loc(1, 1), f"source is over {MAX_SOURCE_BYTES} bytes (128 KiB): split it")]
    depth, ops, kernels = 0, 0, 0
    for n, line in enumerate(src.text.splitlines(), 1):
        if len(line) > MAX_LINE:
            out.append(Diagnostic(Loc(n, MAX_LINE + 1), f"line is {len(line)} characters long; the limit is {MAX_LINE}"))
            break
        code = line.split("#", 1)[0]
        if code.lstrip().startswith("kernel "):
            kernels += 1
            if kernels > MAX_KERNELS:
                out.append(Diagnostic(Loc(n, 1), f"more than {MAX_KERNELS} kernels in one file: split it"))
                break
        if depth == 0:
            ops = 0                                 # a new statement (brackets join lines)
        for m in _OPS.finditer(code):
            ops += 1
            if ops > MAX_OPERATORS:
                out.append(Diagnostic(Loc(n, m.start() + 1), f"expression has more than {MAX_OPERATORS} "
                                      f"operators: split it into named parts"))
                return out
        for col, ch in enumerate(code, 1):
            if ch in "([":
                depth += 1
                if depth > MAX_DEPTH:
                    out.append(Diagnostic(Loc(n, col), f"brackets nest more than {MAX_DEPTH} deep"))
                    return out
            elif ch in ")]":
                depth = max(0, depth - 1)
    return out


def parse(text: str, filename: str = "<string>") -> A.Module:
    """Parse source text; raise ``CompileError`` (never a lark exception) on bad input."""
    src = Source(text if text.endswith("\n") else text + "\n", filename)
    over = _limits(src)
    if over:
        raise CompileError(src, over)
    try:
        tree = _parser().parse(src.text)
        return _ToAst().transform(tree)
    except UnexpectedInput as e:
        raise CompileError(src, [_syntax_diagnostic(src, e)]) from None
    except DedentError as e:
        line = _dedent_line(src)
        raise CompileError(src, [Diagnostic(Loc(line, 1), "unindent does not match any outer "
                                            "indentation level")]) from None
    except VisitError as e:
        if isinstance(e.orig_exc, _SyntaxAt):
            raise CompileError(src, [Diagnostic(e.orig_exc.loc, e.orig_exc.message)]) from None
        if isinstance(e.orig_exc, RecursionError):
            raise CompileError(src, [Diagnostic(Loc(1, 1), "the program nests too deeply to parse")]) from None
        raise
    except RecursionError:                      # a last line of defence behind the limits above
        raise CompileError(src, [Diagnostic(Loc(1, 1), "the program nests too deeply to parse")]) from None


def _next_code_line(src: Source, after: int) -> int:
    n = after + 1
    while n <= len(src.text.splitlines()) and not src.line(n).split("#", 1)[0].strip():
        n += 1
    return n


def _dedent_line(src: Source) -> int:
    """Find the first line whose indentation matches no enclosing level (lark does not say)."""
    stack = [0]
    for i, raw in enumerate(src.text.splitlines(), 1):
        s = raw.split("#", 1)[0]
        if not s.strip():
            continue
        ind = len(s.expandtabs(8)) - len(s.expandtabs(8).lstrip())
        if ind > stack[-1]:
            stack.append(ind)
        else:
            while ind < stack[-1]:
                stack.pop()
            if ind != stack[-1]:
                return i
    return 1
