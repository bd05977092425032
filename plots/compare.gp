# compare.gp: NEW / BASE median time per matched point, with the tolerance band
# written by dsa-bench plot; reads compare.dat. Redraw by hand: gnuplot compare.gp (writes compare.png, compare.svg)
if (!exists("out")) out = "compare"
do for [fmt in "png svg"] {
if (fmt eq "png") {
  set terminal pngcairo size 2562,660 noenhanced font "sans,11"
} else {
  set terminal svg size 2562,660 dynamic noenhanced font "sans,11" background rgb "white"
}
set output out.".".fmt
reset
set datafile missing "-"
set style fill solid 1.0 border lc rgb "#404040"
set border 3
set tics nomirror
set grid ytics lc rgb "#e4e4e4" lt 1
set key outside bottom center horizontal samplen 1.5
set title "NEW kernels-h200.h5 / BASE baseline-h200.h5\nmedian time ratio per kernel case (87 matched), sorted\ngrey: the tolerance, max(threshold 5%, noise), as dsa-bench compare judges"
set ylabel "time NEW / BASE (%)"
set xrange [-0.8:86.8]
set yrange [92.2:119.6]
set format y "%g%%"
set xtics rotate by 90 right scale 0 font ",9"
set xlabel "kernel case: name, heads h=, context (tokens), decode batch B="
set arrow 1 from graph 0, first 100 to graph 1, first 100 nohead lc rgb "#606060" front
set style fill solid 1.0 noborder
plot \
  "compare.dat" using 1:(100):(0.4):7:xtic(2) with boxxyerror lc rgb "#d8d8d8" title "tolerance", \
  "compare.dat" using 1:(strcol(8) eq "SAME" ? $5 : NaN) with points pt 7 ps 1.3 lc rgb "#606060" title "SAME", \
  "compare.dat" using 1:(strcol(8) eq "SLOWER" ? $5 : NaN) with points pt 7 ps 1.3 lc rgb "#d43d2f" title "SLOWER"
unset multiplot
set output
}
