<?php

declare(strict_types=1);

use Autoheal\Sdk\Agent\Agent;

/**
 * The seed's Molam_AutoHeal on the SDK. Commands are polled from WP-Cron every five
 * minutes and applied only once verified (the seed's REST endpoint that took unsigned
 * commands from anyone is gone); checkout events go out as interop events; fatal errors as
 * telemetry, which is what Sira detects issues from.
 */
final class Molam_AutoHeal
{
    /** @var callable(): Agent */
    private $agentFactory;
    private Molam_Heartbeat $heartbeat;
    private ?Agent $agent = null;

    /** @param callable(): Agent $agentFactory built on first use: no database connection on ordinary page loads */
    public function __construct(callable $agentFactory, Molam_Heartbeat $heartbeat)
    {
        $this->agentFactory = $agentFactory;
        $this->heartbeat = $heartbeat;
        add_filter('cron_schedules', static function (array $s): array {
            $s['molam_5min'] = ['interval' => 300, 'display' => 'Every five minutes'];
            return $s;
        });
        add_action('molam_autoheal_tick', [$this, 'tick']);
        if (!wp_next_scheduled('molam_autoheal_tick')) {
            wp_schedule_event(time(), 'molam_5min', 'molam_autoheal_tick');
        }
        add_action('woocommerce_checkout_order_processed', fn ($orderId) => $this->interop('woocommerce_checkout_order_processed', (int) $orderId));
        add_action('woocommerce_payment_complete', fn ($orderId) => $this->interop('woocommerce_payment_complete', (int) $orderId));
        add_action('shutdown', [$this, 'report_fatal_error']);
        add_action('admin_notices', [self::class, 'show_admin_notices']);
    }

    public function tick(): void
    {
        // A cron hook is the plugin's boundary: a misconfiguration (no API key yet, an
        // unreadable root key) is logged, not a fatal error on the site.
        try {
            $report = $this->agent()->tick();
            foreach ($report->errors() as $error) {
                error_log('[molam autoheal] ' . $error);
            }
        } catch (\Throwable $e) {
            error_log('[molam autoheal] tick failed: ' . get_class($e) . ': ' . $e->getMessage());
        }
    }

    public function report_fatal_error(): void
    {
        $e = error_get_last();
        if ($e !== null && in_array($e['type'], [E_ERROR, E_CORE_ERROR, E_COMPILE_ERROR], true) && strpos($e['file'], 'molam') !== false) {
            $this->agent()->events()->send('error', ['file' => basename($e['file']), 'line' => $e['line']], $e['message'], 'critical');
        }
    }

    /** notify_merchant operations end up here, shown on the next admin page. */
    public static function queue_admin_notice(string $template, string $severity, string $message, array $data): void
    {
        $notices = get_option('molam_autoheal_admin_notices', []);
        $notices[] = ['severity' => $severity, 'message' => $message];
        update_option('molam_autoheal_admin_notices', array_slice($notices, -20), false);
    }

    public static function show_admin_notices(): void
    {
        $classes = ['info' => 'notice-info', 'warning' => 'notice-warning', 'critical' => 'notice-error'];
        foreach (get_option('molam_autoheal_admin_notices', []) as $n) {
            printf('<div class="notice %s"><p>%s</p></div>', esc_attr($classes[$n['severity']] ?? 'notice-info'), esc_html($n['message']));
        }
    }

    private function interop(string $event, int $orderId): void
    {
        $order = wc_get_order($orderId);
        $id = $this->agent()->installationId();
        if ($order === false || $id === null) {
            return;
        }
        $payload = ['order_id' => $orderId, 'total' => $order->get_total(), 'currency' => $order->get_currency(), 'status' => $order->get_status()];
        $this->agent()->interop()->send($id, $event, $payload, $event . ':' . $orderId);
    }

    private function agent(): Agent
    {
        if ($this->agent === null) {
            $this->agent = ($this->agentFactory)();
            $this->heartbeat->watch_toggles($this->agent);
        }
        return $this->agent;
    }
}
