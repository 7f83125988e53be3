package pathnorm

import "testing"

func BenchmarkNormalize(b *testing.B) {
	// opts is Default() unless a case names other options; "tomcat params"
	// keeps parameters so that it measures what it did before Default
	// started refusing them.
	benchmarks := []struct {
		name, target string
		opts         *Options
	}{
		{name: "normal", target: "/api/v1/users/123"},
		{name: "normal with query", target: "/api/v1/users/123?fields=name,email&limit=10"},
		{name: "kept escapes", target: "/files/report%20Q3%C3%A9.pdf"},
		{name: "unreserved escapes", target: "/api/%76%31/users/%7Ebob"},
		{name: "dot segments", target: "/api/v1/../v2/./users//123/.."},
		{name: "tomcat params", target: "/public/..;jsessionid=1/admin", opts: &optsDefaultKeep},
		{name: "jsessionid last", target: "/shop/cart;jsessionid=0123456789ABCDEF"},
		{name: "strip params", target: "/app;v=1/users;jsessionid=1/123", opts: &optsDefaultStrip},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			opts := Default()
			if bm.opts != nil {
				opts = *bm.opts
			}
			for b.Loop() {
				if _, err := Normalize(bm.target, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseQuery(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseQuery("fields=name%2Cemail&limit=10&tag=a&tag=b+c"); err != nil {
			b.Fatal(err)
		}
	}
}
