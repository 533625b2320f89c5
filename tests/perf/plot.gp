# plot.gp: latency vs offered load (cache hits), one line per server.
# gnuplot -e "dir='RESULTS_DIR'; servers='heimdall unbound dnsdist reflector'; note=''" plot.gp
# reads dir/sweep-<server>.dat (written by report.py), writes dir/latency.png
set terminal pngcairo size 1500,520 font ",11"
set output dir.'/latency.png'
if (!exists("note")) note = ''
set multiplot layout 1,3 title "Latency vs offered load, cache hits (server on 1 core; lower is better)".(note eq '' ? '' : "\n".note)
set logscale y
set grid ytics mytics xtics
set xlabel "offered load (k queries/s)"
set ylabel "latency (ms)"
set key top left
set xrange [0:*]
set datafile missing '?'
files = ''
do for [s in servers] { if (system('test -s '.dir.'/sweep-'.s.'.dat && echo y') eq 'y') { files = files.' '.s } }
set title "p50"
plot for [s in files] dir.'/sweep-'.s.'.dat' using 1:3 with linespoints lw 2 pt 7 title s
set title "p99"
plot for [s in files] dir.'/sweep-'.s.'.dat' using 1:4 with linespoints lw 2 pt 7 title s
set title "p99.9"
plot for [s in files] dir.'/sweep-'.s.'.dat' using 1:5 with linespoints lw 2 pt 7 title s
unset multiplot
