package arena_test

import (
	"fmt"

	"dedupcache/dedupbody/arena"
)

func ExampleArena() {
	a := arena.New(arena.Config{})
	defer a.Close()

	body := []byte("hello, arena")
	s, err := a.Alloc(len(body))
	if err != nil {
		panic(err)
	}
	copy(s.Bytes(), body)
	fmt.Printf("%s (len %d, cap %d)\n", s.Bytes(), len(s.Bytes()), cap(s.Bytes()))

	a.Free(s) // nobody may read s.Bytes() from here on
	fmt.Println(a.Stats().Live)
	// Output:
	// hello, arena (len 12, cap 64)
	// 0
}
