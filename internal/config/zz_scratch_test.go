package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestScratch(t *testing.T) {
	data, _ := os.ReadFile("/tmp/cases.txt")
	for _, s := range strings.Split(string(data), "===\n") {
		cfg, err := ParseLB("lb.yaml", []byte(s))
		fmt.Printf("-----\n%s\n=> %v\n", s, err)
		if cfg != nil && os.Getenv("V") != "" {
			fmt.Printf("%+v\n", cfg)
			for _, n := range cfg.PoolOrder {
				fmt.Printf("%+v\n", *cfg.Pools[n])
			}
		}
	}
}
