package bpf

//go:generate go tool bpf2go -target bpfel -cc clang-14 -strip llvm-strip-14 -type header -type exec_record -type fork_record -type net_record -type sys_record -type watch_value sensor sensor.bpf.c -- -I. -O2 -g -Wall -Werror
