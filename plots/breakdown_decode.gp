# breakdown_decode.gp: stacked per-component medians as % of the wall median, one bar per point
# written by dsa-bench plot; reads breakdown_decode.dat. Redraw by hand: gnuplot breakdown_decode.gp (writes breakdown_decode.png, breakdown_decode.svg)
if (!exists("out")) out = "breakdown_decode"
do for [fmt in "png svg"] {
if (fmt eq "png") {
  set terminal pngcairo size 1578,600 noenhanced font "sans,11"
} else {
  set terminal svg size 1578,600 dynamic noenhanced font "sans,11" background rgb "white"
}
set output out.".".fmt
reset
set datafile missing "-"
set style fill solid 1.0 border lc rgb "#404040"
set border 3
set tics nomirror
set grid ytics lc rgb "#e4e4e4" lt 1
set title "Decode step: component medians as % of the wall median (bar label: wall ms/step)\nGPU kernel time (CUPTI); glm-4.7-flash-dsa, 47 of 47 layers; NVIDIA H200 (GPU)"
set ylabel "share of the wall time (%)"
set xlabel "config, grouped by context and batch" offset 0,-1.6
set bmargin 6.5
set xrange [-0.7:30.7]
set yrange [0:112]
set format y "%g%%"
set boxwidth 0.8 absolute
set xtics scale 0 font ",9"
set key outside right top vertical reverse Left samplen 1.5 title "component"
set label 1 "10K, B=1" at first 1.00, graph 0 center offset 0,-2.4
set label 2 "10K, B=8" at first 5.00, graph 0 center offset 0,-2.4
set label 3 "60K, B=1" at first 9.00, graph 0 center offset 0,-2.4
set label 4 "60K, B=8" at first 13.00, graph 0 center offset 0,-2.4
set label 5 "120K, B=1" at first 17.00, graph 0 center offset 0,-2.4
set label 6 "120K, B=8" at first 21.00, graph 0 center offset 0,-2.4
set label 7 "200K, B=1" at first 25.00, graph 0 center offset 0,-2.4
set label 8 "200K, B=8" at first 29.00, graph 0 center offset 0,-2.4
plot \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:24] column(j) / $5):xtic(4) with boxes lc rgb "#eeeeee" title "idle", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:23] column(j) / $5) with boxes lc rgb "#525252" title "lm_head", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:22] column(j) / $5) with boxes lc rgb "#969696" title "final_norm", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:21] column(j) / $5) with boxes lc rgb "#b8860b" title "dense_ffn", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:20] column(j) / $5) with boxes lc rgb "#00441b" title "moe_shared", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:19] column(j) / $5) with boxes lc rgb "#238b45" title "moe_experts", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:18] column(j) / $5) with boxes lc rgb "#74c476" title "moe_router", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:17] column(j) / $5) with boxes lc rgb "#a1d99b" title "ffn_norm", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:16] column(j) / $5) with boxes lc rgb "#08306b" title "o_proj", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:15] column(j) / $5) with boxes lc rgb "#bcbddc" title "mla_out", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:14] column(j) / $5) with boxes lc rgb "#54278f" title "sparse_attn", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:13] column(j) / $5) with boxes lc rgb "#9e9ac8" title "mla_absorb", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:12] column(j) / $5) with boxes lc rgb "#a63603" title "idx_topk", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:11] column(j) / $5) with boxes lc rgb "#e6550d" title "idx_logits", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:10] column(j) / $5) with boxes lc rgb "#fdae6b" title "idx_proj", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:9] column(j) / $5) with boxes lc rgb "#2171b5" title "kv_proj", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:8] column(j) / $5) with boxes lc rgb "#6baed6" title "q_proj", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:7] column(j) / $5) with boxes lc rgb "#c7e9c0" title "attn_norm", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:6] column(j) / $5) with boxes lc rgb "#8c8c8c" title "embed", \
  "breakdown_decode.dat" using 1:(100 * sum [j=6:24] column(j) / $5):(sprintf("%.3g", column(25))) with labels offset 0,0.7 font ",8" notitle
unset multiplot
set output
}
