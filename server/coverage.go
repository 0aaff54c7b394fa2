package server

import (
	"fmt"
	"io"
)

// Coverage prints how many of the document's operations the server
// implements and lists the missing ones; `make api-coverage` runs it.
func Coverage(w io.Writer) error {
	ops, err := Operations()
	if err != nil {
		return err
	}
	done := 0
	var missing []Operation
	for _, op := range ops {
		if op.Implemented {
			done++
		} else {
			missing = append(missing, op)
		}
	}
	fmt.Fprintf(w, "implemented %d / %d operations of the Prefect 3.9.1 document\n", done, len(ops))
	if len(missing) > 0 {
		fmt.Fprintf(w, "missing (%d), answered 404 {\"detail\":\"Not Found\"} like an unknown FastAPI route:\n", len(missing))
		for _, op := range missing {
			fmt.Fprintf(w, "  %-7s %-70s %s\n", op.Method, "/api"+op.Path, op.ID)
		}
	}
	return nil
}
