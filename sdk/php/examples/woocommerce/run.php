<?php

declare(strict_types=1);

// The example plugin's tick outside WordPress (for tests and for trying the loop from a
// shell): configuration from the environment, one JSON line of what the tick did.
//
//   AUTOHEAL_URL  AUTOHEAL_KEY  AUTOHEAL_DSN  [AUTOHEAL_DB_USER  AUTOHEAL_DB_PASSWORD]
//   AUTOHEAL_TRUSTED_ROOT (a root .pub file; several, comma-separated)
//   AUTOHEAL_STATE_DIR (the file journal; without it the journal lives in the shop database)
//   AUTOHEAL_SITE_URL  AUTOHEAL_TABLES ("wp_molam_*" or "wp_molam_orders,wp_molam_logs")
//   [AUTOHEAL_PLUGIN_VERSION (1.3.5)  AUTOHEAL_CMS (woocommerce)]
//
// Exit 0: the tick ran cleanly; 1: a step failed (see "errors"); 2: configuration error.

require is_file(__DIR__ . '/vendor/autoload.php') ? __DIR__ . '/vendor/autoload.php' : dirname(__DIR__, 2) . '/autoload.php';

use Autoheal\Sdk\Agent\AgentBuilder;
use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Database\TableSelection;
use Autoheal\Sdk\Heartbeat\PluginInfo;
use Autoheal\Sdk\Log\ErrorLogLogger;
use Autoheal\Sdk\Support\Json;

/** @return non-empty-string */
function autoheal_env(string $name, ?string $default = null): string
{
    $value = getenv($name);
    if ($value === false || $value === '') {
        if ($default === null) {
            throw new InvalidArgumentException($name . ' is not set');
        }
        return $default;
    }
    return $value;
}

try {
    $pdo = Database::connect(autoheal_env('AUTOHEAL_DSN'), getenv('AUTOHEAL_DB_USER') ?: null, getenv('AUTOHEAL_DB_PASSWORD') ?: null);
    $builder = AgentBuilder::create(autoheal_env('AUTOHEAL_URL'), autoheal_env('AUTOHEAL_KEY'))
        ->plugin(new PluginInfo(autoheal_env('AUTOHEAL_CMS', 'woocommerce'), autoheal_env('AUTOHEAL_PLUGIN_VERSION', '1.3.5'), autoheal_env('AUTOHEAL_SITE_URL')))
        ->shopDatabase($pdo, TableSelection::parse(autoheal_env('AUTOHEAL_TABLES')))
        ->trustedRootFiles(array_map('trim', explode(',', autoheal_env('AUTOHEAL_TRUSTED_ROOT'))))
        ->logger(new ErrorLogLogger('warning'));
    if (getenv('AUTOHEAL_STATE_DIR')) {
        $builder->fileJournal(autoheal_env('AUTOHEAL_STATE_DIR'));
    }
    $agent = $builder->build();
} catch (Throwable $e) {
    fwrite(STDERR, 'run.php: ' . $e->getMessage() . "\n");
    exit(2);
}

$report = $agent->tick();
$out = [
    'installation_id' => $report->installationId(),
    'commands' => array_map(static fn ($c): array => [
        'id' => $c->id(),
        'verdict' => $c->verdict(),
        'reason' => $c->reason(),
        'success' => $c->success(),
        'applied_operations' => $c->appliedOperations(),
        'ack' => $c->ack(),
    ], $report->commands()),
    'errors' => $report->errors(),
];
echo Json::encode($out), "\n";
exit($report->ran() && $report->errors() === [] ? 0 : 1);
