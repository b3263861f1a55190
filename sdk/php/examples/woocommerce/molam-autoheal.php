<?php
/**
 * Plugin Name: Molam Payments — autoheal agent (example)
 * Description: The seed's Molam_Heartbeat and Molam_AutoHeal on the autoheal PHP SDK.
 * Version: 1.3.5
 * Requires PHP: 7.4
 */

declare(strict_types=1);

if (!defined('ABSPATH')) {
    exit;
}

// Composer install, or the SDK copied next to the plugin (sdk/php/autoload.php).
require_once is_file(__DIR__ . '/vendor/autoload.php') ? __DIR__ . '/vendor/autoload.php' : dirname(__DIR__, 2) . '/autoload.php';
require_once __DIR__ . '/class-molam-heartbeat.php';
require_once __DIR__ . '/class-molam-autoheal.php';

use Autoheal\Sdk\Agent\AgentBuilder;
use Autoheal\Sdk\Apply\CallbackNotifier;
use Autoheal\Sdk\Config\WordPressOptionsConfigStore;
use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Database\TableSelection;
use Autoheal\Sdk\Heartbeat\PluginInfo;
use Autoheal\Sdk\Http\WordPressTransport;
use Autoheal\Sdk\Journal\PdoJournal;
use Autoheal\Sdk\Log\ErrorLogLogger;

const MOLAM_PLUGIN_VERSION = '1.3.5';

/**
 * WordPress's $wpdb has no PDO, so the agent opens its own connection from wp-config's
 * constants. DB_HOST may carry a port or a socket ("host:3307", "localhost:/run/mysqld.sock").
 */
function molam_autoheal_pdo(): \PDO
{
    [$host, $port] = array_pad(explode(':', DB_HOST, 2), 2, null);
    $where = $port !== null && $port !== '' && preg_match('/^\d+$/D', $port) !== 1 ? 'unix_socket=' . $port : 'host=' . $host . ($port ? ';port=' . $port : '');
    $charset = defined('DB_CHARSET') && DB_CHARSET !== '' ? DB_CHARSET : 'utf8mb4';
    return Database::connect('mysql:' . $where . ';dbname=' . DB_NAME . ';charset=' . $charset, DB_USER, DB_PASSWORD);
}

/** WordPress's environment types, in the heartbeat's terms ("local" is a development site). */
function molam_environment(): string
{
    $type = wp_get_environment_type();
    return $type === 'local' ? 'development' : $type;
}

function molam_autoheal_agent(Molam_Heartbeat $heartbeat): \Autoheal\Sdk\Agent\Agent
{
    global $wpdb;
    $pdo = molam_autoheal_pdo();
    $root = defined('MOLAM_AUTOHEAL_TRUSTED_ROOT') ? MOLAM_AUTOHEAL_TRUSTED_ROOT : __DIR__ . '/trusted-root.pub';
    return AgentBuilder::create(get_option('molam_api_url', 'https://api.molam.com'), (string) get_option('molam_api_key'))
        ->plugin(new PluginInfo('woocommerce', MOLAM_PLUGIN_VERSION, home_url(), molam_environment(), get_bloginfo('version')))
        ->transport(new WordPressTransport())
        ->shopDatabase($pdo, TableSelection::prefixed($wpdb->prefix . 'molam_'))
        ->journal(new PdoJournal($pdo, $wpdb->prefix))
        ->configStore(new WordPressOptionsConfigStore('molam_autoheal_config'))
        ->trustedRootFiles([$root])
        ->notifier(new CallbackNotifier([Molam_AutoHeal::class, 'queue_admin_notice']))
        ->errorRate([$heartbeat, 'error_rate'])
        ->logger(new ErrorLogLogger(WP_DEBUG ? 'debug' : 'warning'))
        ->build();
}

add_action('plugins_loaded', static function (): void {
    $heartbeat = new Molam_Heartbeat();
    new Molam_AutoHeal(static fn () => molam_autoheal_agent($heartbeat), $heartbeat);
});
