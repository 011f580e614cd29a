"""The inspector: query and reference side by side with synchronised zoom and pan, inlier match lines
coloured by ``Evidence.inlier_scores``, the reference outline projected into the query, the searched
regions, and blend / flicker views of the reference warped onto the query (warp precomputed by a worker).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap, QPolygonF, QTransform
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSlider,
    QStackedLayout,
    QVBoxLayout,
    QWidget,
)

from copylens.core.results import Region

from .explain import region_label, region_tag
from .jobs import InspectData, display_homography

MODES = ("Side by side", "Blend", "Flicker")
MAX_LINES = 50  # match lines drawn by default: the strongest ones (all inliers still count in the score)
FLICKER_MS = 450  # flicker period, per image
OUTLINE_COLOUR = QColor(0, 200, 255)
REGION_COLOUR = QColor(255, 200, 0)


def score_colour(score: float) -> QColor:
    """Red (weak match) to green (near-identical descriptors)."""
    return QColor.fromHsvF(max(0.0, min(1.0, float(score))) * 0.33, 0.9, 0.95)


class SyncedView(QGraphicsView):
    """A view whose wheel zoom and scrolling are reported so a sibling can follow."""

    zoomed = Signal(float, object)  # factor, anchor scene point
    moved = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keep review keys (C / N / arrows) for the window
        self.horizontalScrollBar().valueChanged.connect(lambda _v: self.moved.emit())
        self.verticalScrollBar().valueChanged.connect(lambda _v: self.moved.emit())

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt override
        factor = 1.25 if event.angleDelta().y() > 0 else 0.8
        anchor = self.mapToScene(event.position().toPoint())
        self.scale(factor, factor)
        self.zoomed.emit(factor, anchor)
        self.moved.emit()

    def centre(self) -> QPointF:
        return self.mapToScene(self.viewport().rect().center())


class MatchOverlay(QWidget):
    """Draws one line per inlier between the two views (children of the same canvas)."""

    def __init__(self, canvas: InspectorCanvas) -> None:
        super().__init__(canvas)
        self.canvas = canvas
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)
        self.drawn = 0  # lines drawn by the last paint (tests and the status line read it)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.drawn = 0
        c = self.canvas
        if c.data is None or not c.show_matches or c.mode != 0 or not c.evidence:
            return
        ev = c.data.match.evidence
        order = np.argsort(-np.asarray(ev.inlier_scores), kind="stable")[: c.max_lines]
        qs, rs = c.data.query_scale, c.data.reference_scale
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        qvp, rvp = c.query_view.viewport(), c.ref_view.viewport()
        qrect = qvp.rect().translated(qvp.mapTo(c, qvp.rect().topLeft()))
        rrect = rvp.rect().translated(rvp.mapTo(c, rvp.rect().topLeft()))
        dense = len(order) > 100
        for i in order:
            (qx, qy), (rx, ry), s = ev.query_points[i], ev.reference_points[i], ev.inlier_scores[i]
            a = qvp.mapTo(c, c.query_view.mapFromScene(QPointF(qx / qs, qy / qs)))
            b = rvp.mapTo(c, c.ref_view.mapFromScene(QPointF(rx / rs, ry / rs)))
            if not (qrect.contains(a) and rrect.contains(b)):
                continue
            colour = score_colour(s)
            colour.setAlpha(150 if dense else 210)
            p.setPen(QPen(colour, 1.0 if dense else 1.4))
            p.drawLine(a, b)
            p.drawEllipse(QPointF(a), 2.5, 2.5)
            p.drawEllipse(QPointF(b), 2.5, 2.5)
            self.drawn += 1
        p.end()


class InspectorCanvas(QWidget):
    """Two synchronised views plus the match overlay; holds the current :class:`InspectData`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.query_view, self.ref_view = SyncedView(), SyncedView()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(24)  # room for match lines to cross
        lay.addWidget(self.query_view, 1)
        lay.addWidget(self.ref_view, 1)
        self.overlay = MatchOverlay(self)
        self.data: InspectData | None = None
        self.mode = 0
        self.show_matches = self.show_outline = self.show_regions = True
        self.evidence = True  # False for a below-threshold candidate: no lines, no outline, no warp
        self.max_lines = MAX_LINES
        self.blend = 0.5
        self._syncing = False
        self._query_item = self._ref_item = self._warp_item = None
        self._annotations: list = []
        self._tags: list = []  # (region tag, anchored at its region's right edge)
        self._h = None  # display homography reference -> query
        for src, dst in ((self.query_view, self.ref_view), (self.ref_view, self.query_view)):
            src.zoomed.connect(lambda f, _a, d=dst: self._follow_zoom(d, f))  # places the tags too
            src.moved.connect(lambda s=src, d=dst: self._follow_pan(s, d))
        self._flicker = QTimer(self)
        self._flicker.setInterval(FLICKER_MS)
        self._flicker.timeout.connect(self._flip)

    # ---- content ---------------------------------------------------------------------------------------
    def set_data(self, data: InspectData | None, evidence: bool = True) -> None:
        self.data, self.evidence = data, evidence
        for view in (self.query_view, self.ref_view):
            view.scene().clear()
        self._annotations = []
        self._tags = []
        self._query_item = self._ref_item = self._warp_item = None
        self._h = None
        if data is not None:
            self._query_item = self.query_view.scene().addPixmap(QPixmap.fromImage(data.query))
            self._ref_item = self.ref_view.scene().addPixmap(QPixmap.fromImage(data.reference))
            for view, item in ((self.query_view, self._query_item), (self.ref_view, self._ref_item)):
                view.scene().setSceneRect(item.boundingRect())
            if data.warped is not None and evidence:
                self._warp_item = QGraphicsPixmapItem(QPixmap.fromImage(data.warped))
                self._warp_item.setZValue(1)
                self.query_view.scene().addItem(self._warp_item)
            hom = data.match.evidence.homography
            if hom is not None and evidence:
                self._h = display_homography(hom, data.query_scale, data.reference_scale)
            self._add_annotations()
        self.apply_mode()
        self.fit()

    def _add_annotations(self) -> None:
        d, scene = self.data, self.query_view.scene()
        qs = d.query_scale
        regions = list(d.regions)
        if d.match.evidence.region is not None and d.match.evidence.region not in regions:
            regions.append(d.match.evidence.region)
        for r in regions:
            if r.kind == "full":
                continue
            x0, y0, x1, y1 = (v / qs for v in r.box)
            used = r == d.match.evidence.region
            pen = QPen(REGION_COLOUR, 3 if used else 1.5, Qt.PenStyle.SolidLine if used else Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            if r.quad is not None:  # a picture seen at an angle: its own outline, searched upright
                rect = scene.addPolygon(QPolygonF([QPointF(float(x) / qs, float(y) / qs)
                                                   for x, y in np.reshape(r.quad, (4, 2))]), pen)
            else:
                rect = scene.addRect(QRectF(x0, y0, x1 - x0, y1 - y0), pen)
            label = self._region_tag(scene, r, x0, x1, y0, d.query.width() / 2)
            for it in (rect, label):
                it.setZValue(3)
                self._annotations.append(("region", it))
        outline = d.match.evidence.outline if self.evidence else None
        if outline is not None and len(outline) >= 3:
            poly = QPolygonF([QPointF(float(x) / qs, float(y) / qs) for x, y in np.asarray(outline)])
            pen = QPen(OUTLINE_COLOUR, 2.5)
            pen.setCosmetic(True)
            item = scene.addPolygon(poly, pen)
            item.setZValue(2)
            self._annotations.append(("outline", item))

    def _region_tag(self, scene: QGraphicsScene, region: Region, x0: float, x1: float, y0: float, mid_x: float
                    ) -> QGraphicsSimpleTextItem:
        """A region's short name as a tag that stays legible at any zoom and on any picture: region-coloured
        text on a dark plate, inside the region's top corner nearer the image's middle, kept inside the
        picture as the view zooms (:meth:`place_tags`); its tooltip has the full name."""
        label = scene.addSimpleText(region_tag(region))
        label.setToolTip(region_label(region))
        label.setBrush(REGION_COLOUR)
        label.setFlag(label.GraphicsItemFlag.ItemIgnoresTransformations)
        right = (x0 + x1) / 2 > mid_x
        label.setPos(x1 if right else x0, y0)
        plate = QGraphicsRectItem(label.boundingRect().adjusted(-3, -1, 3, 1), label)
        plate.setBrush(QColor(0, 0, 0, 175))
        plate.setPen(Qt.PenStyle.NoPen)
        plate.setFlag(plate.GraphicsItemFlag.ItemStacksBehindParent)
        self._tags.append((label, right))
        return label

    def place_tags(self) -> None:
        """Shift each tag, in screen pixels, to its region's corner and then into the picture: a tag does
        not scale with the view, so at a small zoom it would run past the picture's edge."""
        if self.data is None:
            return
        s = self.query_view.transform().m11()  # the views scale uniformly, without rotation
        width = self.data.query.width()
        for label, right in self._tags:
            w = label.boundingRect().width()
            x = label.pos().x()
            dx = -w - 3 if right else 3.0
            lo, hi = -x * s + 3, (width - x) * s - w - 3
            label.setTransform(QTransform.fromTranslate(max(lo, min(dx, hi)) if hi >= lo else lo, 3))

    # ---- display options -------------------------------------------------------------------------------
    def apply_mode(self) -> None:
        side = self.mode == 0
        self.ref_view.setVisible(side)
        if self._warp_item is not None:
            self._warp_item.setVisible(not side)
            self._warp_item.setOpacity(self.blend if self.mode == 1 else 1.0)
        if self.mode == 2 and self._warp_item is not None:
            self._flicker.start()
        else:
            self._flicker.stop()
        for kind, item in self._annotations:
            item.setVisible(self.show_outline if kind == "outline" else self.show_regions)
        self.overlay.update()

    def _flip(self) -> None:
        if self._warp_item is not None:
            self._warp_item.setVisible(not self._warp_item.isVisible())

    def fit(self) -> None:
        for view in (self.query_view, self.ref_view):
            if view.scene().items():
                view.resetTransform()
                view.fitInView(view.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
        self.place_tags()
        self.overlay.update()

    # ---- synchronisation -------------------------------------------------------------------------------
    def _follow_zoom(self, dst: SyncedView, factor: float) -> None:
        if not self._syncing:
            self._syncing = True
            dst.scale(factor, factor)
            self._syncing = False
            self.place_tags()

    def _follow_pan(self, src: SyncedView, dst: SyncedView) -> None:
        self.overlay.update()
        if self._syncing or self.data is None or not dst.isVisible():
            return
        self._syncing = True
        c = src.centre()
        if self._h is not None:
            h = self._h if src is self.ref_view else np.linalg.inv(self._h)
            v = h @ np.array([c.x(), c.y(), 1.0])
            target = QPointF(v[0] / v[2], v[1] / v[2]) if abs(v[2]) > 1e-9 else dst.centre()
        else:  # same relative position
            sr, dr = src.sceneRect(), dst.sceneRect()
            fx, fy = c.x() / max(sr.width(), 1), c.y() / max(sr.height(), 1)
            target = QPointF(fx * dr.width(), fy * dr.height())
        dst.centerOn(target)
        self._syncing = False

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.overlay.setGeometry(self.rect())
        self.overlay.raise_()
        QTimer.singleShot(0, self.fit)


class Inspector(QWidget):
    """The canvas plus its toolbar (mode, layers, blend amount) and a caption."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = InspectorCanvas()
        self.caption = QLabel("Select a result to inspect the evidence.")
        self.caption.setWordWrap(True)
        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.mode.currentIndexChanged.connect(self._set_mode)
        self.mode.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.boxes = {}
        for key, text in (("matches", "Match lines"), ("outline", "Outline"), ("regions", "Regions")):
            box = QCheckBox(text)
            box.setChecked(True)
            box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            box.toggled.connect(lambda on, k=key: self._toggle(k, on))
            self.boxes[key] = box
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(50)
        self.slider.setMaximumWidth(120)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self._set_blend)
        self.slider.setToolTip("Blend: reference opacity over the query")
        bar = QHBoxLayout()
        bar.addWidget(QLabel("<b>Inspector</b>"))
        bar.addWidget(self.mode)
        for box in self.boxes.values():
            bar.addWidget(box)
        bar.addWidget(self.slider)
        bar.addStretch(1)
        self.placeholder = QLabel("No pair selected")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.stack = QStackedLayout()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.canvas)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.caption)
        lay.addLayout(self.stack, 1)
        self._set_mode(0)

    def show_data(self, data: InspectData | None, message: str = "", evidence: bool = True) -> None:
        """Show a pair; ``evidence=False`` (a candidate below the threshold) shows the two images only."""
        self.stack.setCurrentIndex(1 if data is not None else 0)
        self.canvas.set_data(data, evidence)
        has_warp = data is not None and data.warped is not None and evidence
        for i in (1, 2):
            self.mode.model().item(i).setEnabled(has_warp)
        if not has_warp and self.mode.currentIndex() != 0:
            self.mode.setCurrentIndex(0)
        if data is None:
            self.placeholder.setText(message or "No pair selected")
            self.caption.setText(message.splitlines()[0] if message else "Select a result to inspect the evidence.")
            return
        m, ev = data.match, data.match.evidence
        if not evidence:
            self.caption.setText(f"{data.outcome.request.label} ↔ <b>{m.reference_id}</b> · {m.score:.0%}: "
                                 "below the threshold, <b>not a match</b>; no evidence drawn")
            return
        extra = " · mirrored" if ev.mirrored else ""
        extra += "" if ev.homography is not None else " · no geometric model"
        shown = min(ev.num_inliers, self.canvas.max_lines)
        lines = f" ({shown} strongest drawn)" if shown < ev.num_inliers else ""
        self.caption.setText(f"{data.outcome.request.label} ↔ <b>{m.reference_id}</b> · {m.score:.0%} · "
                             f"{ev.num_inliers} inliers{lines}{extra} · wheel or +/−: zoom, F: fit")

    def set_mode(self, index: int) -> None:
        """0 side by side, 1 blend, 2 flicker (blend and flicker need a geometric model)."""
        if self.mode.model().item(index).isEnabled():
            self.mode.setCurrentIndex(index)

    def toggle(self, key: str) -> None:
        """Flip one layer: "matches", "outline" or "regions"."""
        self.boxes[key].setChecked(not self.boxes[key].isChecked())

    def zoom(self, factor: float) -> None:
        c = self.canvas
        c.query_view.scale(factor, factor)
        if c.ref_view.isVisible():
            c.ref_view.scale(factor, factor)
        c.place_tags()
        c.overlay.update()

    def _set_mode(self, index: int) -> None:
        self.canvas.mode = index
        self.slider.setVisible(index == 1)
        self.boxes["matches"].setEnabled(index == 0)
        self.canvas.apply_mode()
        QTimer.singleShot(0, self.canvas.fit)

    def _toggle(self, key: str, on: bool) -> None:
        setattr(self.canvas, f"show_{key}", on)
        self.canvas.apply_mode()

    def _set_blend(self, value: int) -> None:
        self.canvas.blend = value / 100
        self.canvas.apply_mode()

    def annotated_image(self) -> QImage:
        """The inspector view as shown, with a caption strip: for "Export view as PNG"."""
        shot = self.canvas.grab().toImage()
        strip = 28
        out = QImage(shot.width(), shot.height() + strip, QImage.Format.Format_ARGB32)
        out.fill(self.palette().window().color())
        p = QPainter(out)
        p.drawImage(0, strip, shot)
        p.setPen(self.palette().windowText().color())
        f = QFont(self.font())
        f.setPointSize(max(9, f.pointSize()))
        p.setFont(f)
        p.drawText(QRectF(6, 0, out.width() - 12, strip), Qt.AlignmentFlag.AlignVCenter,
                   self.caption.text().replace("<b>", "").replace("</b>", ""))
        p.end()
        return out
