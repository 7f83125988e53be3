package pathnorm_test

import (
	"errors"
	"fmt"

	"tollgate.dev/tollgate/internal/policy/pathnorm"
)

func ExampleNormalize() {
	for _, target := range []string{
		"/public/../admin?x=1#top",
		"//admin",
		"/admin%2Fx",
		"/admin;x/users",
		"/shop/cart;jsessionid=ABC",
	} {
		r, err := pathnorm.Normalize(target, pathnorm.Default())
		switch {
		case errors.Is(err, pathnorm.ErrEscapedSlash), errors.Is(err, pathnorm.ErrPathParameter):
			fmt.Printf("%s -> 400 (%v)\n", target, err)
		case err != nil:
			fmt.Printf("%s -> 400\n", target)
		default:
			fmt.Printf("%s -> path %s query %q\n", target, r.Path, r.RawQuery)
		}
	}
	// Output:
	// /public/../admin?x=1#top -> path /admin query "x=1"
	// //admin -> path /admin query ""
	// /admin%2Fx -> 400 (pathnorm: path: escaped slash or backslash at offset 6)
	// /admin;x/users -> 400 (pathnorm: path: path parameter (';') in path at offset 6)
	// /shop/cart;jsessionid=ABC -> path /shop/cart;jsessionid=ABC query ""
}
