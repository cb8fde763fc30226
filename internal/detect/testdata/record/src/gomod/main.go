package main

import (
	"encoding/json"
	"fmt"
	"net/http"
)

func main() {
	b, _ := json.Marshal(map[string]int{"a": 1})
	fmt.Println(string(b), http.StatusOK)
}
