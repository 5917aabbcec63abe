package kql

// Query is a parsed query: let statements, then one tabular expression.
type Query struct {
	Lets []*Let
	Body *Pipeline
}

// Let binds a name to a scalar expression: let threshold = 5;
type Let struct {
	Pos   Pos
	Name  string
	Value Expr
}

// Pipeline is a source followed by operators: Source | op | op ...
type Pipeline struct {
	Source Source
	Ops    []Op
}

// Source produces the rows a pipeline starts with.
type Source interface{ sourcePos() Pos }

// TableRef names a table: AzureDiagnostics.
type TableRef struct {
	Pos  Pos
	Name string
}

// SearchSource is search [kind=...] [in (T, ...)] Pred, or union T, ...: rows of several
// tables with a $table column. Pred nil means every row (search *).
type SearchSource struct {
	Pos           Pos
	Tables        []TableRef // empty: every table
	Pred          Expr
	CaseSensitive bool
	Union         bool
}

// PrintSource is print a = expr, ...: one row.
type PrintSource struct {
	Pos   Pos
	Items []NamedExpr
}

// SubPipeline is ( pipeline ) as a source.
type SubPipeline struct {
	Pos  Pos
	Body *Pipeline
}

func (s *TableRef) sourcePos() Pos     { return s.Pos }
func (s *SearchSource) sourcePos() Pos { return s.Pos }
func (s *PrintSource) sourcePos() Pos  { return s.Pos }
func (s *SubPipeline) sourcePos() Pos  { return s.Pos }

// Op is a tabular operator.
type Op interface{ opPos() Pos }

// WhereOp keeps rows where Pred is true.
type WhereOp struct {
	Pos  Pos
	Pred Expr
}

// SearchOp keeps rows matching a search predicate (bare strings match any column).
type SearchOp struct {
	Pos           Pos
	Pred          Expr
	CaseSensitive bool
}

// ProjectOp selects and computes columns (project) or adds them (extend).
type ProjectOp struct {
	Pos    Pos
	Extend bool
	Items  []NamedExpr
}

// ProjectAwayOp drops columns; names may end in '*'.
type ProjectAwayOp struct {
	Pos   Pos
	Names []NamePat
}

// ProjectRenameOp renames columns: New = Old.
type ProjectRenameOp struct {
	Pos   Pos
	Pairs [][2]NamePat // {new, old}
}

// SummarizeOp groups rows by By and computes Aggs per group.
type SummarizeOp struct {
	Pos  Pos
	Aggs []NamedExpr
	By   []NamedExpr
}

// SortOp orders rows (sort by, order by).
type SortOp struct {
	Pos  Pos
	Keys []SortKey
}

// TopOp is top N by key.
type TopOp struct {
	Pos Pos
	N   Expr
	Key SortKey
}

// TakeOp is take N (limit N).
type TakeOp struct {
	Pos Pos
	N   Expr
}

// DistinctOp keeps one row per distinct combination of Items (or of all columns with Star).
type DistinctOp struct {
	Pos   Pos
	Star  bool
	Items []NamedExpr
}

// CountOp replaces the rows with their count.
type CountOp struct{ Pos Pos }

// GetSchemaOp replaces the rows with the input's columns.
type GetSchemaOp struct{ Pos Pos }

// RenderOp is accepted and ignored: it only tells a front end how to draw the result.
type RenderOp struct{ Pos Pos }

func (o *WhereOp) opPos() Pos         { return o.Pos }
func (o *SearchOp) opPos() Pos        { return o.Pos }
func (o *ProjectOp) opPos() Pos       { return o.Pos }
func (o *ProjectAwayOp) opPos() Pos   { return o.Pos }
func (o *ProjectRenameOp) opPos() Pos { return o.Pos }
func (o *SummarizeOp) opPos() Pos     { return o.Pos }
func (o *SortOp) opPos() Pos          { return o.Pos }
func (o *TopOp) opPos() Pos           { return o.Pos }
func (o *TakeOp) opPos() Pos          { return o.Pos }
func (o *DistinctOp) opPos() Pos      { return o.Pos }
func (o *CountOp) opPos() Pos         { return o.Pos }
func (o *GetSchemaOp) opPos() Pos     { return o.Pos }
func (o *RenderOp) opPos() Pos        { return o.Pos }

// NamePat is a column name, or a prefix pattern ending in '*' (project-away only).
type NamePat struct {
	Pos  Pos
	Name string
}

// NamedExpr is [Name =] Expr. Name is empty when the query gave none.
type NamedExpr struct {
	Name string
	// Names holds (a, b) = expr names; only for aggregations that return several columns.
	Names []string
	Expr  Expr
}

// SortKey is expr [asc|desc] [nulls first|last].
type SortKey struct {
	Expr       Expr
	Asc        bool
	NullsFirst bool
	NullsSet   bool
}

// Expr is a scalar expression.
type Expr interface{ exprPos() Pos }

// Literal is a constant.
type Literal struct {
	Pos Pos
	Val Value
}

// Ident names a column or a let binding.
type Ident struct {
	Pos  Pos
	Name string
}

// Star is '*' where a predicate means "any column" (where * has "x") or an aggregation means
// "all columns" (arg_max(T, *)).
type Star struct{ Pos Pos }

// Member is X.name or X["name"] or X[0].
type Member struct {
	Pos   Pos
	X     Expr
	Name  string // for .name and ["name"]
	Index Expr   // for [expr]
}

// Call is a function or aggregation call.
type Call struct {
	Pos  Pos
	Name string
	Args []Expr
}

// Unary is -X, +X.
type Unary struct {
	Pos Pos
	Op  string
	X   Expr
}

// Binary is X op Y for arithmetic, comparison, logic and string operators.
type Binary struct {
	Pos  Pos
	Op   string // "and", "or", "==", "contains", "!has", "matches regex", ...
	X, Y Expr
}

// InExpr is X in (list), X !in (list), X in~ (list).
type InExpr struct {
	Pos      Pos
	X        Expr
	List     []Expr
	Not      bool
	CaseFold bool
}

// BetweenExpr is X between (Lo .. Hi), or !between.
type BetweenExpr struct {
	Pos    Pos
	X      Expr
	Lo, Hi Expr
	Not    bool
}

// Paren is ( X ), kept so that errors and column naming can see it.
type Paren struct {
	Pos Pos
	X   Expr
}

func (e *Literal) exprPos() Pos     { return e.Pos }
func (e *Ident) exprPos() Pos       { return e.Pos }
func (e *Star) exprPos() Pos        { return e.Pos }
func (e *Member) exprPos() Pos      { return e.Pos }
func (e *Call) exprPos() Pos        { return e.Pos }
func (e *Unary) exprPos() Pos       { return e.Pos }
func (e *Binary) exprPos() Pos      { return e.Pos }
func (e *InExpr) exprPos() Pos      { return e.Pos }
func (e *BetweenExpr) exprPos() Pos { return e.Pos }
func (e *Paren) exprPos() Pos       { return e.Pos }

// unparen strips parentheses.
func unparen(e Expr) Expr {
	for {
		p, ok := e.(*Paren)
		if !ok {
			return e
		}
		e = p.X
	}
}
