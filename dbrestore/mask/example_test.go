package mask_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/restage/restage/dbrestore/mask"
)

func ExampleRules_NewStream() {
	rules, err := mask.New(mask.Config{Columns: map[string]string{"public.person.email": "email"}},
		func(string) string { return "the key" })
	if err != nil {
		panic(err)
	}
	out := "SET client_encoding = 'UTF8';\nCOPY public.person (id, email) FROM stdin;\n1\tann@example.org\n2\t\\N\n\\.\n"
	st := rules.NewStream(strings.NewReader(out), nil)
	h, _, err := st.Header()
	if err != nil {
		panic(err)
	}
	rows, err := io.ReadAll(st) // what COPY FROM STDIN would receive
	if err != nil {
		panic(err)
	}
	fmt.Println(h.Statement)
	fmt.Print(string(rows))
	// Output:
	// COPY public.person (id, email) FROM STDIN
	// 1	u6ecb358094559fa1@example.invalid
	// 2	\N
}
