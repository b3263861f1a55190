<?php
// The PHP SDK's verification of one command (issue 18): certificate, command and bundle, as
// a plugin runs it on every command it takes (CommandVerifier::verify on the conformance
// kit's accepted apply, with a fresh file journal). Prints one JSON line of per-command
// figures over N runs. Run by benches/php_verify.sh beside the Rust reference verifier.
//   php benches/php/verify.php [RUNS=2000]
declare(strict_types=1);

require __DIR__ . '/../../sdk/php/autoload.php';

use Autoheal\Sdk\Journal\FileJournal;
use Autoheal\Sdk\Time\FixedClock;
use Autoheal\Sdk\Verify\CommandVerifier;
use Autoheal\Sdk\Verify\TrustedRoots;

$runs = (int) ($argv[1] ?? 2000);
$dir = __DIR__ . '/../../sdk/conformance/cases/accept_apply';
$case = json_decode((string) file_get_contents($dir . '/case.json'), true, 64, JSON_THROW_ON_ERROR);
$command = (string) file_get_contents($dir . '/command.json');
$bundle = (string) file_get_contents($dir . '/bundle.json');
$roots = TrustedRoots::fromBase64($case['trusted_roots']);
$clock = FixedClock::at($case['now']);
$state = sys_get_temp_dir() . '/autoheal-bench-' . bin2hex(random_bytes(6));
mkdir($state);
$verifier = new CommandVerifier($roots, new FileJournal($state), $clock);

$times = [];
for ($i = 0; $i < $runs; $i++) {
    $start = hrtime(true);
    $verdict = $verifier->verify($command, $bundle, $case['install_id']);
    $times[] = hrtime(true) - $start;
    if (!$verdict->isAccepted()) {
        fwrite(STDERR, "refused: " . json_encode($verdict->toArray()) . "\n");
        exit(1);
    }
}
array_map('unlink', glob($state . '/*') ?: []);
rmdir($state);
sort($times);
$us = static fn (float $ns): float => round($ns / 1000, 1);
echo json_encode([
    'php' => PHP_VERSION,
    'runs' => $runs,
    'p50_us' => $us($times[intdiv($runs, 2)]),
    'p99_us' => $us($times[(int) floor($runs * 0.99)]),
    'mean_us' => $us(array_sum($times) / $runs),
    'per_second' => (int) round($runs / (array_sum($times) / 1e9)),
]), "\n";
